"""`python -m bench.sink`: a subscriber process that measures event latency into HDR histograms.

Each publication is stamped with `time.time_ns()` on receipt. Latencies (µs):
`<source>` = receipt − the router's `ingest_ns` (ingest → delivered), and
`tick.source` = receipt − the event's own time (for the benchmark's trades that
is when the load generator made the record, so it includes any ingest backlog).
A tick event's ingest → delivered time is also split at its stamps (`HOPS`):
router ingest → worker detection (batching, the router's send, the worker's
queue, detection), detection → publish (the worker's send, the aggregator's
queue, dedup), publish → receipt (PUB to SUB).
Requests on `--control`: {"op": "ready"}, {"op": "take"} (everything since the
last take, then start afresh), {"op": "stop"} (take, then exit).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from typing import Any

import msgspec
import zmq

from tickmesh import sched
from tickmesh.config import load_config
from tickmesh.metrics import Latency
from tickmesh.runtime import StopFlag
from tickmesh.schema import Publication, published_decoder
from tickmesh.sockets import make_socket

log = logging.getLogger(__name__)
HOPS = ("tick.hop.detect", "tick.hop.publish", "tick.hop.deliver")
_decode = msgspec.msgpack.Decoder(dict[str, Any])
_encode = msgspec.msgpack.Encoder()


class Tally:
    """What arrived since the last take: latencies, counts by source and kind, sequence gaps (pure)."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.latency: dict[str, Latency] = {}
        self.counts: Counter[str] = Counter()
        self.keys: list[tuple[str, str, str, int]] = []
        self.payloads: list[bytes] = []
        self.last_seq = 0
        self.epoch = 0

    def add(self, payload: bytes, received_ns: int) -> None:
        try:
            message = published_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.counts["undecodable"] += 1
            return
        if message.epoch != self.epoch:
            self.epoch, self.last_seq = message.epoch, message.seq - (1 if isinstance(message, Publication) else 0)
        expected = message.seq - 1 if isinstance(message, Publication) else message.seq
        if expected > self.last_seq:
            self.counts["gaps"] += 1
            self.counts["missed"] += expected - self.last_seq
        self.last_seq = max(self.last_seq, message.seq)
        if not isinstance(message, Publication):
            self.counts["heartbeats"] += 1
            return
        event = message.event
        kind = str(event.__struct_config__.tag)
        self.counts["events"] += 1
        self.counts[f"{event.source}.{kind}"] += 1
        self._record(event.source, received_ns - event.ingest_ns)
        if event.source == "tick":
            self._record("tick.source", received_ns - event.time)
            self._record(HOPS[0], event.detected_ns - event.ingest_ns)
            self._record(HOPS[1], message.published_ns - event.detected_ns)
            self._record(HOPS[2], received_ns - message.published_ns)
        if self.keep:
            self.keys.append((kind, event.source, event.ticker, event.time))
            self.payloads.append(payload)

    def _record(self, name: str, ns: int) -> None:
        latency = self.latency.get(name)
        if latency is None:
            latency = self.latency[name] = Latency()
        latency.record_ns(max(ns, 0))

    def take(self) -> dict[str, Any]:
        out = {
            "latency": {name: lat.histogram.encode() for name, lat in self.latency.items()},
            "counts": dict(self.counts),
            "keys": self.keys,
            "payloads": self.payloads,
        }
        self.latency, self.counts, self.keys, self.payloads = {}, Counter(), [], []
        return out


def run(args: argparse.Namespace, stop: StopFlag) -> int:
    config = load_config(args.config)
    # with `--set process.realtime=true` the subscriber is scheduled like the P1 path, as a latency-
    # sensitive consumer would be: else its own wake-up on a busy host is most of the tick tail
    sched.apply(config, "sink")
    ctx = zmq.Context()
    sub = make_socket(ctx, zmq.SUB, connect=config.endpoints.publish, hwm=1_000_000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    ctl = make_socket(ctx, zmq.REP, bind=args.control, hwm=100)
    tally = Tally(args.keep)
    heard = False
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(ctl, zmq.POLLIN)
    try:
        while not stop:
            ready = dict(poller.poll(100))
            if sub in ready:
                heard = True
                for _ in range(10_000):
                    try:
                        frames = sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    tally.add(frames[-1], time.time_ns())
            if ctl in ready:
                request = _decode.decode(ctl.recv())
                op = request.get("op")
                if op == "ready":
                    ctl.send(_encode.encode({"heard": heard}))
                else:
                    ctl.send(_encode.encode(tally.take()))
                    if op == "stop":
                        break
    finally:
        sub.close(0)
        ctl.close(0)
        ctx.term()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--control", required=True, help="REP endpoint to bind")
    p.add_argument("--keep", action="store_true", help="also keep every event's key and payload (dedup runs)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sink %(levelname)s %(message)s")
    return run(args, StopFlag())


if __name__ == "__main__":
    raise SystemExit(main())
