"""`python -m bench.load`: the load generator, a producer process pushing paced records, steered over a REP socket.

Requests (msgpack maps) on `--control`:
  {"op": "rate", "rate": R}   R records/s from now on (0 idle, -1 as fast as the router takes them);
                              the answer is the stats of the phase it ends
  {"op": "warm", "tick": [a, b], "ohlcv": [a, b], "points": P}   send warm-up history for symbol index ranges
  {"op": "stats"}             counters, and how far behind its schedule it is
  {"op": "stop"}              flush (the router acknowledges everything sent), answer, exit
Every answer is a stats map.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import msgspec
import zmq

from bench.workload import Mix, WireRecord, Workload, symbol, warm_history
from tickmesh.config import load_config
from tickmesh.producer import FlushTimeout, Producer
from tickmesh.runtime import StopFlag
from tickmesh.sockets import make_socket

log = logging.getLogger(__name__)
UNPACED = -1.0
POOL_FRAMES = 512  # blast mode: distinct pre-encoded frames sent in a cycle
_decode = msgspec.msgpack.Decoder(dict[str, Any])
_encode = msgspec.msgpack.Encoder()


class Schedule:
    """How many records are due at a rate since the rate was set (pure)."""

    def __init__(self, rate: float, start_ns: int) -> None:
        self.rate, self.start_ns, self.sent = rate, start_ns, 0

    def due(self, now_ns: int) -> int:
        if self.rate == UNPACED:
            return sys.maxsize
        return int(self.rate * (now_ns - self.start_ns) / 1e9) - self.sent

    def behind_s(self, now_ns: int) -> float:
        return max(0.0, self.due(now_ns) / self.rate) if self.rate > 0 else 0.0


class Loader:
    """One producer: live records from a Workload (or a cycle of pre-encoded frames), paced by a Schedule."""

    def __init__(self, ctx: zmq.Context, args: argparse.Namespace, stop: StopFlag) -> None:  # type: ignore[type-arg]
        config = load_config(args.config)
        # --batch is per message, so per router: a frame of `batch` × routers records is split by ticker
        # into one of about `batch` for each router, as a producer batching per partition sends
        self.stop, self.batch = stop, args.batch * config.router.count
        self.mix = msgspec.json.decode(args.mix, type=Mix)
        self.workload = Workload(self.mix)
        self.producer = Producer(
            ctx, config.endpoints, name=args.name, hwm=args.hwm, should_stop=lambda: bool(stop),
            routers=config.router.count,
        )  # fmt: skip
        self.ctl = make_socket(ctx, zmq.REP, bind=args.control, hwm=100)
        self.pool = (  # (router, frame, records): frames of one batch per router
            [f for _ in range(POOL_FRAMES) for f in self._frames(self.workload.records(self.batch, time.time_ns()))]
            if args.blast
            else []
        )
        self.schedule = Schedule(0.0, time.monotonic_ns())
        self.warm: Iterator[list[WireRecord]] | None = None
        self.pending: deque[tuple[int, bytes, int]] = deque()  # (router, frame, records) due to be sent
        self.sent = self.frames = self.blocked = 0
        self.done = self.warming = False

    def run(self) -> int:
        poller = zmq.Poller()
        poller.register(self.ctl, zmq.POLLIN)
        while not self.done and not self.stop:
            if dict(poller.poll(self._wait_ms())).get(self.ctl):
                self._answer()
            for _ in range(64):  # a burst of sends between looks at the control socket
                if not self._pump():
                    break
        self.producer.close()
        return 0

    def _frames(self, records: list[WireRecord]) -> list[tuple[int, bytes, int]]:
        """One frame per router the records go to (`[router] count`; tickers partitioned as a producer does)."""
        return self.producer.frames(records, _ticker)

    def _wait_ms(self) -> int:
        if self.pending:  # the router pushes back: wait a little for room
            self.producer.pushes[self.pending[0][0]].poll(5, zmq.POLLOUT)
            return 0
        if self.warm is not None or self.schedule.rate == UNPACED:
            return 0
        if self.schedule.rate <= 0:
            return 50
        wanted = self._chunk() - self.schedule.due(time.monotonic_ns())
        return max(0, min(50, math.ceil(wanted / self.schedule.rate * 1_000)))  # never a busy wait

    def _chunk(self) -> int:
        """Records per frame: about 1 ms worth at the current rate, at most `batch`."""
        return max(1, min(self.batch, int(self.schedule.rate / 1_000)))

    def _pump(self) -> bool:
        """Send one frame if one is due; False when there is nothing to do now (or the router pushes back)."""
        if not self.pending and not self._make_frame():
            return False
        router, frame, n = self.pending[0]
        try:
            self.producer.pushes[router].send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.blocked += 1
            return False
        self.pending.popleft()
        self.producer.unflushed.add(router)  # its flush marks go to every router sent to
        self.sent += n
        self.producer.sent_records += n
        self.frames += 1
        if self.warm is None:
            self.schedule.sent += n
        return True

    def _make_frame(self) -> bool:
        if self.warm is not None:
            records = next(self.warm, None)
            if records is None:
                self.warm = None
                self.warming = False
                return False
            self.pending.extend(self._frames(records))
            return True
        if self.schedule.rate == 0:
            return False
        due = self.schedule.due(time.monotonic_ns())
        if due < self._chunk() and self.schedule.rate != UNPACED:
            return False
        if self.pool:
            self.pending.append(self.pool[self.frames % len(self.pool)])
        else:
            self.pending.extend(self._frames(self.workload.records(min(due, self.batch), time.time_ns())))
        return True

    def _answer(self) -> None:
        try:
            request = _decode.decode(self.ctl.recv())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.ctl.send(_encode.encode({"error": str(exc)}))
            return
        op = request.get("op")
        if op == "rate":  # the answer is the stats of the phase that ends here
            self.ctl.send(_encode.encode(self.stats()))
            self.schedule = Schedule(float(request["rate"]), time.monotonic_ns())
            return
        elif op == "warm":
            tick = [symbol(self.mix.tick_prefix, i) for i in range(*request.get("tick", (0, 0)))]
            ohlcv = [symbol(self.mix.ohlcv_prefix, i) for i in range(*request.get("ohlcv", (0, 0)))]
            points = int(request.get("points", 30))
            self.warming = True
            self.warm = warm_history(tick, ohlcv, time.time_ns(), tick_points=points, chunk=self.batch)
        elif op == "stop":
            self.schedule = Schedule(0.0, time.monotonic_ns())
            self._flush_pending()
            try:
                self.producer.flush(10.0)
                flushed = True
            except FlushTimeout as exc:
                log.warning("%s", exc)
                flushed = False
            self.done = True
            self.ctl.send(_encode.encode({**self.stats(), "flushed": flushed}))
            return
        self.ctl.send(_encode.encode(self.stats()))

    def _flush_pending(self) -> None:
        deadline = time.monotonic() + 5
        while self.pending and time.monotonic() < deadline:
            if not self._pump():
                self.producer.pushes[self.pending[0][0]].poll(10, zmq.POLLOUT)

    def stats(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        return {
            "sent": self.sent,
            "frames": self.frames,
            "blocked": self.blocked,
            "rate": self.schedule.rate,
            "phase_sent": self.schedule.sent,
            "phase_s": (now - self.schedule.start_ns) / 1e9,
            "behind_s": self.schedule.behind_s(now),
            "warming": self.warming,
            "workload": dict(self.workload.counts),
            "time_ns": time.time_ns(),
        }


def _ticker(record: WireRecord) -> str:
    return str(record[1])  # ("T", ticker, …): every wire record's ticker is its second element


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--control", required=True, help="REP endpoint to bind")
    p.add_argument("--mix", default="{}", help="the workload Mix as JSON")
    p.add_argument("--name", default=None, help="producer name for flush marks")
    p.add_argument("--batch", type=int, default=100, help="at most this many records per message (per router)")
    p.add_argument("--hwm", type=int, default=1_000, help="send HWM in messages (default 1000)")
    p.add_argument("--blast", action="store_true", help="send a cycle of pre-encoded frames (transport tests)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s load %(levelname)s %(message)s")
    stop = StopFlag()
    ctx = zmq.Context()
    try:
        return Loader(ctx, args, stop).run()
    finally:
        ctx.term()


if __name__ == "__main__":
    raise SystemExit(main())
