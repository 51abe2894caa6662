"""A worker process: one (channel, shard) stream in, its channel's detectors, events out to the aggregator."""

from __future__ import annotations

import logging
import os
import time

import msgspec
import zmq

from tickmesh.bus import BusClient
from tickmesh.config import CHANNELS, Config
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, parser, start
from tickmesh.schema import Ack, Batch, EndOfStream, Event, EventBatch, WorkerDone, encoder, worker_input_decoder
from tickmesh.sockets import EndpointError, make_socket
from workers.detectors import make_detector

log = logging.getLogger(__name__)

DRAIN_S = 4.0  # SIGTERM → wait at most this long for the router's end of stream
ACK_EVERY_NS = 20_000_000  # acknowledge at least this often while records flow
HEARTBEAT_NS = 1_000_000_000  # an idle worker still acknowledges once a second
DRAIN_LIMIT = 256  # input messages per loop turn


class Worker:
    """Owns one worker's sockets, detector and stream position; `run` is its one loop."""

    def __init__(self, config: Config, ctx: zmq.Context, channel: str, shard: int, stop: StopFlag) -> None:  # type: ignore[type-arg]
        self.config, self.channel, self.shard, self.stop = config, channel, shard, stop
        ep, ch = config.endpoints, config.channel(channel)
        self.name = f"worker.{channel}.{shard}"
        self.instance = f"{self.name}:{os.getpid()}:{time.time_ns()}"
        self.metrics = Metrics()
        self.detector = make_detector(channel, ch)
        self.data = make_socket(ctx, zmq.PULL, connect=ep.shard(channel, shard), hwm=ch.hwm)
        self.events = make_socket(ctx, zmq.PUSH, connect=ep.events, hwm=10_000, linger_ms=2_000)
        self.acks = make_socket(ctx, zmq.PUSH, connect=ep.acks, hwm=1_000, linger_ms=500)
        self.bus = BusClient(ctx, config, process=self.name, role="worker", channels=[channel], metrics=self.metrics)
        self.epoch = -1
        self.expected = -1  # the next sequence number wanted; -1 until the first batch
        self.acked = -1
        self.last_ack_ns = 0
        self.last_gap_ns = 0
        self.ended = False  # the router sent end of stream
        self.pending: list[Event] = []

    def run(self) -> int:
        stop = self.stop
        poller = zmq.Poller()
        poller.register(self.data, zmq.POLLIN)
        poller.register(self.bus.sub, zmq.POLLIN)
        self._ack(force=True)  # hello: a new instance gets what the router still holds
        log.info("%s: consuming %s", self.name, self.config.endpoints.shard(self.channel, self.shard))
        deadline = None
        while not (self.ended and stop) and (deadline is None or time.monotonic() < deadline):
            if stop and deadline is None:
                deadline = time.monotonic() + DRAIN_S
            ready = dict(poller.poll(10 if self.expected - 1 > self.acked else 100))
            idle = True
            if self.data in ready:
                idle = self._drain_input() < DRAIN_LIMIT
            if self.bus.sub in ready:
                self._apply_config()
            self._send_events()
            self._ack(force=idle)
            self.bus.report()
        self._finish()
        return 0

    # -- input ---------------------------------------------------------------------
    def _drain_input(self) -> int:
        for n in range(DRAIN_LIMIT):
            try:
                frame = self.data.recv(zmq.NOBLOCK)
            except zmq.Again:
                return n
            try:
                message = worker_input_decoder.decode(frame)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.metrics.count(f"{self.channel}.input_rejected")
                log.warning("%s: undecodable input: %s", self.name, exc)
                continue
            if isinstance(message, EndOfStream):
                self._end(message)
            else:
                self._process(message)
        return DRAIN_LIMIT

    def _end(self, eos: EndOfStream) -> None:
        if eos.epoch == self.epoch and eos.seq < self.expected or self.expected == -1:
            self.ended = True

    def _process(self, batch: Batch) -> None:
        if batch.epoch != self.epoch:  # a (re)started router begins a new stream
            self.epoch, self.expected, self.acked = batch.epoch, batch.seq, batch.seq - 1
            self.ended = False
        if batch.seq > self.expected:
            self._gap()
            return
        skip = self.expected - batch.seq
        if skip >= len(batch.records):
            self.metrics.count(f"{self.channel}.duplicates")
            return
        started = time.perf_counter_ns()
        detect, emit = self.detector.process, self.pending.append
        detected_ns = time.time_ns()
        failed = 0
        for i in range(skip, len(batch.records)):
            try:
                for event in detect(batch.records[i], batch.seq + i, batch.ingest_ns[i], detected_ns):
                    emit(event)
            except Exception:  # a detector bug must not take the channel down
                failed += 1
                log.exception("%s: detector failed on record %d", self.name, batch.seq + i)
        processed = len(batch.records) - skip
        self.expected = batch.seq + len(batch.records)
        counters = self.metrics.counters
        counters[f"{self.channel}.processed"] += processed
        if failed:
            counters[f"{self.channel}.failed"] += failed
        self.metrics.latencies[f"{self.channel}.processing"].record_ns(time.perf_counter_ns() - started)

    def _gap(self) -> None:
        """Records are missing (a lost message): ask the router for everything after what we have."""
        self.metrics.count(f"{self.channel}.gaps")
        now = time.monotonic_ns()
        if now - self.last_gap_ns > 100_000_000:
            self.last_gap_ns = now
            self._send_ack(resend=True)

    # -- output ----------------------------------------------------------------------
    def _send_events(self) -> None:
        if not self.pending:
            return
        counters = self.metrics.counters
        for event in self.pending:
            counters[f"{self.channel}.events.{event.__struct_config__.tag}"] += 1
        self._send(encoder.encode(EventBatch(self.instance, self.pending)))
        self.pending = []

    def _send(self, frame: bytes) -> None:
        """Send to the aggregator, waiting while it applies backpressure, but not past a stop."""
        while not self.events.poll(100, zmq.POLLOUT):
            self.metrics.count("events.send_blocked")
            if self.stop:
                self.metrics.count("events.unsent")
                log.error("%s: aggregator not accepting events at stop; dropped one batch", self.name)
                return
        self.events.send(frame)

    def _ack(self, force: bool) -> None:
        """Acknowledge what was processed and whose events were handed to the aggregator's socket."""
        done = self.expected - 1
        now = time.monotonic_ns()
        due = done > self.acked and (force or now - self.last_ack_ns >= ACK_EVERY_NS)
        if due or now - self.last_ack_ns >= HEARTBEAT_NS:
            self._send_ack(resend=False)

    def _send_ack(self, resend: bool) -> None:
        self.acked = max(self.acked, self.expected - 1)
        self.last_ack_ns = time.monotonic_ns()
        ack = Ack(self.channel, self.shard, self.epoch, self.expected - 1, self.instance, resend)
        try:
            self.acks.send(encoder.encode(ack), zmq.NOBLOCK)
        except zmq.Again:
            self.metrics.count("acks.unsent")

    # -- config and stopping ---------------------------------------------------------
    def _apply_config(self) -> None:
        new = self.bus.receive(self.config)
        if new is None:
            return
        self.config = new
        self.detector.configure(new.channel(self.channel))
        log.info("%s: applied config version %d", self.name, self.bus.version)
        self.bus.report(force=True)

    def _finish(self) -> None:
        self._send_events()
        self._send_ack(resend=False)
        self._send(encoder.encode(WorkerDone(self.instance)))
        self.bus.report(force=True)
        for sock in (self.data, self.events, self.acks):
            sock.close()
        self.bus.close()


def main(argv: list[str] | None = None) -> int:
    p = parser("tickmesh-worker", "Run one channel shard's detectors and push events to the aggregator.")
    p.add_argument("channel", choices=CHANNELS)
    p.add_argument("--shard", type=int, default=0, help="which shard of the channel (default 0)")
    args = p.parse_args(argv)
    config = start(args, f"worker.{args.channel}.{args.shard}")
    if config is None:
        return 2
    if not 0 <= args.shard < config.channel(args.channel).shards:
        log.error("shard %d out of range: channel %s has %d", args.shard, args.channel, config.channel(args.channel).shards)
        return 2
    stop = StopFlag()
    ctx = zmq.Context()
    try:
        return Worker(config, ctx, args.channel, args.shard, stop).run()
    except EndpointError as exc:
        log.error("%s", exc)
        return 2
    finally:
        ctx.term()
