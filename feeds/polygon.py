"""`tickmesh-feed polygon`: a Polygon-compatible websocket client — handshake, reconnects, dedup, recording."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from websockets.exceptions import InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from feeds.polygon_wire import PolygonDecoder
from feeds.pump import Sender, sleep
from tickmesh.cli import EXIT_AUTH, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from tickmesh.config import Config

log = logging.getLogger(__name__)
ERRORS_LOGGED = 20  # then every 1000th, so a flood of bad frames does not flood the log
HANDSHAKE_S = 30.0  # when the silence timeout is off


class AuthFailed(Exception):
    """The server refused the key: retrying would only hammer it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="wss://socket.polygon.io/stocks", help="websocket URL (default %(default)s)")
    p.add_argument("--key-env", default="POLYGON_API_KEY", help="environment variable with the API key (%(default)s)")
    p.add_argument("--subscribe", default="T.*,AM.*", help="channels, e.g. T.AAPL,AM.*,FMV.MSFT (default %(default)s)")
    p.add_argument(
        "--silence-timeout",
        type=float,
        default=90.0,
        help="reconnect after this many seconds without a frame (default 90: more than a minute bar; 0: off)",
    )
    p.add_argument("--backoff-initial", type=float, default=0.5, help="first reconnect delay in seconds (0.5)")
    p.add_argument("--backoff-max", type=float, default=30.0, help="longest reconnect delay in seconds (30)")
    p.add_argument("--record", metavar="PATH", help="append every frame received as a JSON line (replayable)")
    p.add_argument("--batch", type=int, default=500, help="at most this many records per message (default 500)")
    p.add_argument("--stats-interval", type=float, default=30.0, help="seconds between summary log lines (30)")


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: a uniform draw from the upper half of min(max, initial·2^attempt)."""
    ceiling = min(maximum, initial * 2 ** min(attempt, 30))
    return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Options:
    url: str
    key: str
    key_env: str
    subscribe: str
    silence_s: float
    backoff_initial: float
    backoff_max: float
    stats_s: float


class PolygonClient:
    """One long-lived feed: connects, authenticates, subscribes, and reconnects until stopped."""

    def __init__(self, opts: Options, sender: Sender, stopped: Callable[[], bool], record: TextIO | None = None):
        self.opts, self.sender, self.stopped, self.record = opts, sender, stopped, record
        self.decoder = PolygonDecoder()
        self.counters = self.decoder.counters
        self.rng = random.Random()
        self._last_stats = time.monotonic()

    def run(self) -> int:
        """0 when stopped, EXIT_AUTH when the key is refused."""
        attempt = 0
        while not self.stopped():
            got_data = False
            try:
                got_data = self._session()
            except AuthFailed as exc:
                self.counters["auth_failed"] += 1
                log.error(
                    "polygon: authentication failed (%s); check the key in $%s. Not retrying.",
                    self._redact(str(exc)),
                    self.opts.key_env,
                )
                return EXIT_AUTH
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.counters["disconnects"] += 1
                log.warning("polygon: connection to %s lost: %s", self.opts.url, self._redact(str(exc)) or type(exc))
            if self.stopped():
                break
            attempt = 0 if got_data else attempt + 1
            delay = backoff_delay(attempt, self.opts.backoff_initial, self.opts.backoff_max, self.rng)
            self.counters["reconnects"] += 1
            log.info("polygon: reconnecting in %.2f s", delay)
            if not sleep(delay, self.stopped):
                break
        return 0

    def _session(self) -> bool:
        """One connection, until it drops, goes silent or we stop; True if it delivered data."""
        timeout = self.opts.silence_s or HANDSHAKE_S
        with connect(self.opts.url, open_timeout=timeout, close_timeout=0.5, max_size=1 << 24) as ws:
            self.counters["connects"] += 1
            got = self._handshake(ws)
            last = time.monotonic()
            while not self.stopped():
                try:
                    frame = ws.recv(timeout=0.25)
                except TimeoutError:
                    if self.opts.silence_s and time.monotonic() - last > self.opts.silence_s:
                        self.counters["silence_timeouts"] += 1
                        log.warning("polygon: nothing for %.1f s; reconnecting", self.opts.silence_s)
                        return got
                    self._maybe_stats()
                    continue
                last = time.monotonic()
                got = self._handle(frame)[0] or got
                self._maybe_stats()
            return got

    def _handshake(self, ws: ClientConnection) -> bool:
        """connected → auth → subscribe; True if data arrived meanwhile."""
        got = self._await_status(ws, "connected")
        ws.send(json.dumps({"action": "auth", "params": self.opts.key}))
        got = self._await_status(ws, "auth_success") or got
        ws.send(json.dumps({"action": "subscribe", "params": self.opts.subscribe}))
        log.info("polygon: connected to %s, subscribed to %s", self.opts.url, self.opts.subscribe)
        return got

    def _await_status(self, ws: ClientConnection, wanted: str) -> bool:
        deadline = time.monotonic() + (self.opts.silence_s or HANDSHAKE_S)
        got = False
        while not self.stopped():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no `{wanted}` status in time")
            try:
                frame = ws.recv(timeout=min(left, 0.25))
            except TimeoutError:
                continue
            data, statuses = self._handle(frame)
            got = got or data
            if wanted in statuses:
                return got
        return got

    def _handle(self, frame: str | bytes) -> tuple[bool, set[str]]:
        """Record, decode and send one frame; (carried data?, statuses seen). AuthFailed on auth_failed."""
        if self.record is not None:
            self._write_record(frame)
        result = self.decoder.decode(frame)
        for error in result.errors:
            n = self.counters["frame_errors"] = self.counters["frame_errors"] + 1
            if n <= ERRORS_LOGGED or n % 1000 == 0:
                log.warning("polygon: frame %d: %s (%d bad so far)", self.counters["frames"], error, n)
        if result.records:
            self.sender.send(result.records)
        seen = set()
        for status in result.statuses:
            name = str(status.get("status"))
            seen.add(name)
            self.counters[f"status.{name}"] += 1
            message = self._redact(str(status.get("message", "")))
            if name == "auth_failed":
                raise AuthFailed(message or name)
            log.info("polygon: status %s: %s", name, message)
        return result.data > 0, seen

    def _write_record(self, frame: str | bytes) -> None:
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
        if "\n" in text or "\r" in text:
            try:
                text = json.dumps(json.loads(text), separators=(",", ":"))
            except ValueError:
                text = text.replace("\r", " ").replace("\n", " ")
        assert self.record is not None
        self.record.write(text + "\n")

    def _redact(self, text: str) -> str:
        return text.replace(self.opts.key, "***") if self.opts.key else text

    def _maybe_stats(self, final: bool = False) -> None:
        if final or time.monotonic() - self._last_stats >= self.opts.stats_s:
            self._last_stats = time.monotonic()
            log.info("polygon%s: %s; sent %d", " done" if final else "", self.summary(), self.sender.sent)

    def summary(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counters.items()))


def run(args: argparse.Namespace, config: Config, is_stopped: Callable[[], bool]) -> int:
    key = os.environ.get(args.key_env, "")
    if not key:
        log.error("polygon: no API key: set $%s (or name another variable with --key-env)", args.key_env)
        return EXIT_AUTH
    try:
        parse_uri(args.url)
    except InvalidURI as exc:
        log.error("polygon: bad --url: %s", exc)
        return EXIT_USAGE
    # websockets logs every frame at DEBUG, the auth frame (and so the key) included.
    logging.getLogger("websockets").setLevel(max(logging.INFO, logging.getLogger().level))
    opts = Options(
        args.url,
        key,
        args.key_env,
        args.subscribe,
        args.silence_timeout,
        args.backoff_initial,
        args.backoff_max,
        args.stats_interval,
    )
    record = open(args.record, "a", encoding="utf-8", buffering=1) if args.record else None  # noqa: SIM115
    sender = Sender(config, args.batch, is_stopped, name=f"polygon-{time.monotonic_ns() % 1_000_000}")
    client = PolygonClient(opts, sender, is_stopped, record)
    try:
        code = client.run()
    finally:
        flushed = sender.finish()
        client._maybe_stats(final=True)
        if record is not None:
            record.close()
    return code if code else (EXIT_OK if flushed or is_stopped() else EXIT_FAILURE)
