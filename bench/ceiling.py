"""`python -m bench.ceiling ROLE`: the raw transport ceiling, the mesh's topology with plain msgspec pass-through hops.

feed → `router` (PULL ingest; decode, split by channel, re-encode) → `worker CHANNEL`
(decode; `--forward all`: re-encode every record, `--forward progress`: send only
a count, as a mesh worker with its rules off sends only progress) → `aggregator`
(PULL; decode, re-encode, PUB) → `sub` (decode, count). No validation beyond the
typed decode, no sequence numbers, acks, batching timers or detection: what
ZeroMQ + msgspec alone carry here. Each role reports its counters on the status
bus like a mesh process.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import msgspec
import zmq

from tickmesh.bus import Reporter
from tickmesh.config import CHANNELS, Config, load_config
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag
from tickmesh.schema import Bar, FairMarketValue, IngestItem, Mark, Record, Trade, encoder
from tickmesh.sockets import make_socket

log = logging.getLogger(__name__)
HWM = 1_000
DRAIN = 64  # frames taken at once: what is waiting is coalesced into one message per next hop
COALESCE_MAX = 1_024  # records per message at most (as the mesh's router)
_items = msgspec.msgpack.Decoder(list[IngestItem])
_records = msgspec.msgpack.Decoder(list[Record])
_forwarded = msgspec.msgpack.Decoder(list[Record] | int)  # records, or how many records a worker took


def _loop(
    stop: StopFlag,
    pull: zmq.Socket,  # type: ignore[type-arg]
    bus: Reporter,
    handle: Callable[[list[bytes]], None],
    idle: Callable[[], None] = lambda: None,
) -> None:
    """Receive what is waiting (up to DRAIN frames) and handle it at once, until stopped; report on the bus."""
    while not stop:
        if pull.poll(20):
            frames = []
            for _ in range(DRAIN):
                try:
                    frames.append(pull.recv_multipart(zmq.NOBLOCK)[-1])
                except zmq.Again:
                    break
            handle(frames)
        idle()
        bus.report()


def _chunks(records: list[Record]) -> list[list[Record]]:
    return [records[i : i + COALESCE_MAX] for i in range(0, len(records), COALESCE_MAX)]


def _send(sock: zmq.Socket, frame: bytes, stop: StopFlag) -> None:  # type: ignore[type-arg]
    """Send, waiting while the next hop pushes back, but not past a stop."""
    while True:
        try:
            sock.send(frame, zmq.NOBLOCK)
            return
        except zmq.Again:
            if stop:
                return
            sock.poll(100, zmq.POLLOUT)


def router(config: Config, ctx: zmq.Context, metrics: Metrics, stop: StopFlag, bus: Reporter, index: int = 0) -> None:  # type: ignore[type-arg]
    ep = config.endpoints.for_router(index)  # router i of `[router] count`: its own endpoints, as in the mesh
    pull = make_socket(ctx, zmq.PULL, bind=ep.ingest, hwm=HWM)
    sync = make_socket(ctx, zmq.REP, bind=ep.sync, hwm=100)  # answers flush marks: everything before was forwarded
    pushes = {ch: make_socket(ctx, zmq.PUSH, bind=ep.shard(ch, 0), hwm=HWM) for ch in CHANNELS}
    count = metrics.counters
    marks: dict[str, int] = {}

    def handle(frames: list[bytes]) -> None:
        split: dict[str, list[Record]] = {"tick": [], "ohlcv": [], "fmv": []}
        for frame in frames:
            for item in _items.decode(frame):
                if isinstance(item, Trade):
                    split["tick"].append(item)
                elif isinstance(item, Bar):
                    split["ohlcv"].append(item)
                elif isinstance(item, FairMarketValue):
                    split["fmv"].append(item)
                elif isinstance(item, Mark):
                    marks[item.producer] = item.n
        for ch, records in split.items():
            for chunk in _chunks(records):
                _send(pushes[ch], encoder.encode(chunk), stop)
            count[f"{ch}.routed"] += len(records)

    def answer_sync() -> None:
        while sync.poll(0):
            query = msgspec.msgpack.decode(sync.recv())
            sync.send(b"1" if marks.get(query[0], -1) >= query[1] else b"0")

    try:
        _loop(stop, pull, bus, handle, answer_sync)
    finally:
        for sock in (pull, sync, *pushes.values()):
            sock.close(0)


def worker(
    config: Config,
    ctx: zmq.Context,  # type: ignore[type-arg]
    metrics: Metrics,
    stop: StopFlag,
    bus: Reporter,
    channel: str,
    forward_all: bool,
) -> None:
    pull = make_socket(ctx, zmq.PULL, connect=config.endpoints.shard(channel, 0), hwm=HWM)
    for index in range(1, config.router.count):  # fair-queued from every router
        pull.connect(config.endpoints.for_router(index).shard(channel, 0))
    push = make_socket(ctx, zmq.PUSH, connect=config.endpoints.events, hwm=HWM)
    count = metrics.counters

    def handle(frames: list[bytes]) -> None:
        records = [r for frame in frames for r in _records.decode(frame)]
        if forward_all:
            for chunk in _chunks(records):
                _send(push, encoder.encode(chunk), stop)
        else:
            _send(push, encoder.encode(len(records)), stop)
        count[f"{channel}.processed"] += len(records)

    try:
        _loop(stop, pull, bus, handle)
    finally:
        pull.close(0)
        push.close(0)


def aggregator(config: Config, ctx: zmq.Context, metrics: Metrics, stop: StopFlag, bus: Reporter) -> None:  # type: ignore[type-arg]
    pull = make_socket(ctx, zmq.PULL, bind=config.endpoints.events, hwm=HWM)
    pub = make_socket(ctx, zmq.PUB, bind=config.endpoints.publish, hwm=HWM)
    count = metrics.counters

    def handle(frames: list[bytes]) -> None:
        for frame in frames:  # PUB fans out per message; each is already a coalesced batch
            forwarded = _forwarded.decode(frame)
            pub.send_multipart([b"records/", encoder.encode(forwarded)])
            count["published"] += forwarded if isinstance(forwarded, int) else len(forwarded)

    try:
        _loop(stop, pull, bus, handle)
    finally:
        pull.close(0)
        pub.close(0)


def sub(config: Config, ctx: zmq.Context, metrics: Metrics, stop: StopFlag, bus: Reporter) -> None:  # type: ignore[type-arg]
    sock = make_socket(ctx, zmq.SUB, connect=config.endpoints.publish, hwm=HWM)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    count = metrics.counters

    def handle(frames: list[bytes]) -> None:
        for frame in frames:
            forwarded = _forwarded.decode(frame)
            count["delivered"] += forwarded if isinstance(forwarded, int) else len(forwarded)

    try:
        _loop(stop, sock, bus, handle)
    finally:
        sock.close(0)


ROLES = ("router", "worker", "aggregator", "sub")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.splitlines()[0])
    p.add_argument("role", choices=ROLES)
    p.add_argument("channel", nargs="?", choices=CHANNELS)
    p.add_argument("--forward", choices=("all", "progress"), default="all", help="worker: what goes downstream")
    p.add_argument("--index", type=int, default=0, help="router: which of the [router] count routers")
    p.add_argument("--config", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s ceiling.{args.role} %(levelname)s %(message)s")
    if args.role == "worker" and args.channel is None:
        p.error("worker needs a channel")
    config = load_config(args.config)
    stop = StopFlag()
    ctx = zmq.Context()
    metrics = Metrics()
    name = f"ceiling.{args.role}" + (f".{args.channel}" if args.channel else "")
    name += f".{args.index}" if args.index else ""
    bus = Reporter(ctx, config, process=name, role=args.role, metrics=metrics)
    try:
        if args.role == "worker":
            worker(config, ctx, metrics, stop, bus, args.channel, args.forward == "all")
        elif args.role == "router":
            router(config, ctx, metrics, stop, bus, args.index)
        else:
            {"aggregator": aggregator, "sub": sub}[args.role](config, ctx, metrics, stop, bus)
    finally:
        bus.report(force=True)
        bus.close()
        ctx.term()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
