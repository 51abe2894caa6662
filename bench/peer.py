"""`python -m bench.peer`: the single-process peer, the same detectors and dedup as the mesh in one asyncio process.

This is the design's original linear pipeline, kept as the yardstick the mesh
must beat: ingest (PULL, validated exactly as the router does) → one bounded
asyncio queue per channel, `await` per record → that channel's detector →
one event queue → dedup → PUB. It binds the mesh's `ingest`, `sync` and
`publish` endpoints, so the same load generator and subscriber drive it, and
it reports as process `peer` on the status bus.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import cast

import msgspec
import zmq
import zmq.asyncio

from aggregator.dedup import Deduplicator
from router.validation import decode_frame
from tickmesh import sched
from tickmesh.bus import Reporter
from tickmesh.config import CHANNELS, Config, load_config
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag
from tickmesh.schema import (
    HEARTBEAT_TOPIC,
    Event,
    FairMarketValue,
    Heartbeat,
    Mark,
    Publication,
    Record,
    Trade,
    encoder,
    mark_query_decoder,
    topic_of,
)
from tickmesh.sockets import make_socket
from workers.detectors import make_detector

log = logging.getLogger(__name__)
_TYPE_CHANNEL = {Trade: "tick", FairMarketValue: "fmv"}


def _socket(ctx: zmq.asyncio.Context, kind: int, bind: str, hwm: int) -> zmq.asyncio.Socket:
    """A bound asyncio socket (made like every mesh socket: explicit HWM and linger)."""
    return cast(zmq.asyncio.Socket, make_socket(ctx, kind, bind=bind, hwm=hwm))  # type: ignore[arg-type]


class Peer:
    """Sockets, queues, detectors and dedup of the one process; each loop is one asyncio task."""

    def __init__(self, config: Config, ctx: zmq.asyncio.Context, bus_ctx: zmq.Context) -> None:  # type: ignore[type-arg]
        ep = config.endpoints
        self.config = config
        self.ingest = _socket(ctx, zmq.PULL, ep.ingest, config.router.ingest_hwm)
        self.sync = _socket(ctx, zmq.REP, ep.sync, 100)
        self.pub = _socket(ctx, zmq.PUB, ep.publish, config.aggregator.pub_hwm)
        self.metrics = Metrics()
        # it reports its metrics like a mesh process but takes no live settings: no channel is its to apply
        self.bus = Reporter(bus_ctx, config, process="peer", role="peer", metrics=self.metrics)
        self.queues: dict[str, asyncio.Queue[tuple[Record, int, int]]] = {
            ch: asyncio.Queue(maxsize=config.channel(ch).buffer) for ch in CHANNELS
        }
        self.events: asyncio.Queue[Event] = asyncio.Queue(maxsize=100_000)
        self.detectors = {ch: make_detector(ch, config.channel(ch)) for ch in CHANNELS}
        self.dedup = Deduplicator(config.aggregator)
        self.seq = dict.fromkeys(CHANNELS, 0)
        self.marks: dict[str, int] = {}
        self.last_price: dict[str, float] = {}
        self.epoch = time.time_ns()
        self.published = 0
        self.last_sent = time.monotonic()

    async def ingest_loop(self) -> None:
        count = self.metrics.counters
        limit = self.config.router.max_message_bytes
        while True:
            frame = await self.ingest.recv()
            items, rejections = decode_frame(frame, limit)
            for rejection in rejections:
                count[f"{rejection.channel or 'ingest'}.rejected.{rejection.reason}"] += 1
            now = time.time_ns()
            for item in items:
                if isinstance(item, Mark):
                    self.marks[item.producer] = item.n
                    continue
                channel = _TYPE_CHANNEL.get(type(item), "ohlcv")
                if isinstance(item, Trade):
                    self.last_price[item.ticker] = item.price
                elif isinstance(item, FairMarketValue) and item.market_price is None:
                    last = self.last_price.get(item.ticker)
                    if last is not None:
                        item = msgspec.structs.replace(item, market_price=last)
                count[f"{channel}.received"] += 1
                await self.queues[channel].put((item, self.seq[channel], now))  # type: ignore[arg-type]
                self.seq[channel] += 1
            await asyncio.sleep(0)  # one frame at a time: let the channel tasks run

    async def channel_loop(self, channel: str) -> None:
        queue, detect, events = self.queues[channel], self.detectors[channel].process, self.events
        count = self.metrics.counters
        key = f"{channel}.processed"
        while True:
            record, seq, ingest_ns = await queue.get()
            try:
                for event in detect(record, seq, ingest_ns, time.time_ns()):
                    await events.put(event)
            except Exception:  # a detector bug must not stop the benchmark
                count[f"{channel}.failed"] += 1
            count[key] += 1

    async def publish_loop(self) -> None:
        count = self.metrics.counters
        while True:
            event = await self.events.get()
            reason = self.dedup.admit(event, time.time_ns())
            if reason is not None:
                count[f"deduplicated.{reason}"] += 1
                continue
            self.published += 1
            publication = Publication(self.published, self.epoch, time.time_ns(), event)
            await self.pub.send_multipart([topic_of(event), encoder.encode(publication)])
            count["published"] += 1
            self.last_sent = time.monotonic()

    async def sync_loop(self) -> None:
        while True:
            request = await self.sync.recv()
            try:
                query = mark_query_decoder.decode(request)
                seen = self.marks.get(query.producer, -1) >= query.n
            except ValueError:
                seen = False
            await self.sync.send(b"1" if seen else b"0")

    async def report_loop(self, stop: StopFlag) -> None:
        heartbeat = self.config.aggregator.heartbeat_s
        while not stop:
            for ch, queue in self.queues.items():
                self.metrics.gauges[f"{ch}.queue_depth"] = float(queue.qsize())
            self.metrics.gauges["events.queue_depth"] = float(self.events.qsize())
            self.bus.report()
            if time.monotonic() - self.last_sent >= heartbeat:
                beat = Heartbeat(self.published, self.epoch, time.time_ns())
                await self.pub.send_multipart([HEARTBEAT_TOPIC, encoder.encode(beat)])
                self.last_sent = time.monotonic()
            await asyncio.sleep(0.05)

    async def run(self, stop: StopFlag) -> None:
        tasks = [asyncio.create_task(self.ingest_loop()), asyncio.create_task(self.publish_loop())]
        tasks += [asyncio.create_task(self.channel_loop(ch)) for ch in CHANNELS]
        tasks.append(asyncio.create_task(self.sync_loop()))
        try:
            await self.report_loop(stop)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.bus.report(force=True)
            for sock in (self.ingest, self.sync, self.pub):
                sock.close(0)
            self.bus.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s peer %(levelname)s %(message)s")
    config = load_config(args.config)
    sched.apply(config, "peer")  # the same class as the mesh's P1 path when a run asks for realtime
    stop = StopFlag()
    ctx, bus_ctx = zmq.asyncio.Context(), zmq.Context()
    try:
        asyncio.run(Peer(config, ctx, bus_ctx).run(stop))
    finally:
        ctx.term()
        bus_ctx.term()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
