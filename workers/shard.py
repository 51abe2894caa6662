"""One worker shard: a (channel, shard) stream in from each router, the channel's detectors, events out."""

from __future__ import annotations

import logging
import os
import time
from typing import cast

import zmq

from tickmesh import sched
from tickmesh.boundary import Rejection, decode, reject
from tickmesh.bus import BusClient
from tickmesh.config import CHANNELS, ChannelConfig, Config
from tickmesh.deadletters import DeadLetters
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, mesh_parser, serve, start
from tickmesh.schema import (
    Batch,
    Checkpointed,
    EventBatch,
    Gap,
    Hello,
    Record,
    Source,
    StreamState,
    WorkerDone,
    WorkerStopping,
    encoder,
    worker_input_decoder,
)
from tickmesh.sockets import EndpointError, make_socket
from tickmesh.stream import HEARTBEAT_NS, LIVENESS
from workers.breaker import CircuitBreaker
from workers.detectors import make_detector
from workers.link import Link
from workers.snapshot import Cut
from workers.store import CHUNK_ROWS, Position, Store, StoreLocked, Unreadable, store_path

log = logging.getLogger(__name__)

# Progress without events (an empty EventBatch) goes at most this often, or once a quarter of the
# router's window is unreported: every message costs each hop a wake-up, and the router only needs it
# to let go of what it holds (which also waits for the checkpoint, every `state.checkpoint_s`).
PROGRESS_NS = 100_000_000
# A batched channel's events (`batch_size` > 1: OHLCV and FMV by default) go at most this often, or its
# own `timeout_ms` if shorter: under load each batch finds a few, and one message for several batches
# spares the shard and the aggregator a wake-up each. Events found after a quiet spell go at once.
EVENTS_NS = 10_000_000
DRAIN_LIMIT = 256  # input messages per loop turn
CUT_ROWS = 64  # rows of a checkpoint encoded per loop turn (about 40-70 µs: docs/pipeline.md)
FAULT_ENV = "TICKMESH_FAULT_TICKERS"  # chaos testing: records of these tickers make the detector step raise


class InjectedFault(RuntimeError):
    """Raised for a record of a ticker named in TICKMESH_FAULT_TICKERS."""


class Shard:
    """Owns one shard's sockets, detector, stream position and checkpoints; `run` is its one loop."""

    def __init__(self, config: Config, ctx: zmq.Context, channel: str, shard: int, stop: StopFlag) -> None:  # type: ignore[type-arg]
        self.config, self.shard, self.stop = config, shard, stop
        self.channel = cast(Source, channel)
        ep, ch = config.endpoints, config.channel(channel)
        self.name = f"worker.{channel}.{shard}"
        self.instance = f"{self.name}:{os.getpid()}:{time.time_ns()}"
        self.metrics = Metrics()
        self.detector = make_detector(channel, ch)
        self.breaker = CircuitBreaker(ch.breaker_failure_ratio, ch.breaker_min_records, int(ch.breaker_cooloff_s * 1e9))
        self.faults = frozenset(filter(None, os.environ.get(FAULT_ENV, "").split(",")))
        self.dead_letters = DeadLetters(config.state.dead_letters, self.name, config.state.dead_letter_bytes)
        try:
            self.store = Store(store_path(config.state.dir, channel, shard))
        except StoreLocked as exc:
            raise EndpointError(str(exc)) from None  # a second instance of this shard: exit 2, clearly
        self.links = [Link(ctx, config, channel, shard, r) for r in range(config.router.count)]  # one per router
        # IMMEDIATE: nothing is queued for an aggregator that is not connected (yet, or any more)
        self.events = make_socket(ctx, zmq.PUSH, connect=ep.events, hwm=10_000, linger_ms=2_000, immediate=True)
        self.bus = BusClient(ctx, config, process=self.name, role="worker", channels=[channel], metrics=self.metrics)
        self.ignored_before: dict[str, int] = {}
        self.last_ckpt_ns = 0
        self.cut: Cut | None = None  # the checkpoint being encoded, a slice a turn
        self.linger_ns = events_linger_ns(ch)
        self.cut_streams: list[Position] = []  # each router's stream position at the cut

    # -- the loop ------------------------------------------------------------------
    def run(self) -> int:
        self._resume()
        poller = zmq.Poller()
        for link in self.links:
            poller.register(link.data, zmq.POLLIN)
            log.info("%s: consuming %s after seq %d", self.name, link.where, link.stream.position)
        poller.register(self.bus.sub, zmq.POLLIN)
        deadline = None
        parent = os.getppid()
        while not (self._ended() and self.stop) and (deadline is None or time.monotonic() < deadline):
            if os.getppid() != parent:  # the supervisor is gone: stop rather than linger as an orphan
                self.stop.stopping = True
            if self.stop and deadline is None:
                deadline = time.monotonic() + self.config.process.stop_budget(1.0)
                self._send(encoder.encode(WorkerStopping(self.instance, self.channel, self.shard)))
            ready = dict(poller.poll(self._timeout_ms()))
            for link in self.links:
                if link.data in ready:
                    self._drain_input(link)
            if self.bus.sub in ready:
                self._apply_config()
            self._turn(time.monotonic_ns())
        self._finish()
        return 0

    def _ended(self) -> bool:
        """Every router has sent its final StreamState and nothing of its stream is missing."""
        return all(link.stream.ended for link in self.links)

    def _turn(self, now: int) -> None:
        """What follows each read: gaps, events and progress, checkpoints and their acks, heartbeat."""
        for link in self.links:
            if link.stream.ask_gap(now):
                self.metrics.count(f"{self.channel}.gaps")
                self._ack(link, Gap)
            if link.progress_due(now, self.linger_ns, PROGRESS_NS, self.config.router.window):
                self._send_events(link)  # events after linger_ns; bare progress at most every PROGRESS_NS
        self._checkpoint_done()
        due = self.last_ckpt_ns + int(self.config.state.checkpoint_s * 1e9)
        if self.cut or any(link.stream.checkpoint_due(now, due, self.config.router.window) for link in self.links):
            self._checkpoint()
        for link in self.links:
            if now - link.last_beat_ns >= HEARTBEAT_NS and link.stream.epoch >= 0:  # (before any message: Hello)
                self._ack(link, Checkpointed)  # the heartbeat: cumulative, a lost checkpoint ack never holds a stream
        self._report()
        self.stop.health.ready(self._not_ready(now))

    def _not_ready(self, now: int) -> str:
        """Why /readyz fails: a router silent for LIVENESS heartbeats, or the last ack to one not sent."""
        for link in self.links:
            if now - link.heard_ns > LIVENESS * HEARTBEAT_NS:
                return f"router {link.router} not heard (no Batch or StreamState) for 3 heartbeats"
            if link.ack_unsent:
                return f"the last ack to router {link.router} was not sent"
        return ""

    def _timeout_ms(self) -> int:
        """Until progress is due (when there is some to report), else 100 ms (10 while a write is pending);
        0 while a checkpoint is being encoded (its next slice follows a look at the input), 1 while the
        store's writer has enough of its rows in hand."""
        if self.cut:
            return 1 if self.store.behind else 0
        due = [
            link.last_progress_ns + (self.linger_ns if link.pending else PROGRESS_NS)
            for link in self.links
            if link.pending or link.stream.position > link.stream.reported
        ]
        if not due:
            return 10 if self.store.busy else 100
        return max(0, (min(due) - time.monotonic_ns()) // 1_000_000 + 1)

    def _resume(self) -> None:
        """Start from the store: detector state, stream position, unconfirmed events; then say hello."""
        saved = None
        try:
            saved = self.store.load()
            if saved is not None:
                self.detector.restore_rows(saved.header, saved.rows)
        except (Unreadable, ValueError) as exc:
            aside = self.store.move_aside()
            self.metrics.count(f"{self.channel}.state_moved_aside")
            log.error("%s: saved state unusable (%s); moved aside to %s, starting fresh", self.name, exc, aside)
            saved = None
        if saved is not None:
            self.ignored_before = dict(self.detector.ignored)
            for link, position in zip(self.links, saved.streams, strict=False):  # a router gone since: forgotten
                link.restore(position)
                self.metrics.count(f"{self.channel}.restored_events", len(position.events))
                log.info("%s: resumed router %d's stream at seq %d (%d events to confirm)",
                         self.name, link.router, position.seq, len(position.events))  # fmt: skip
                if link.pending or link.stream.epoch >= 0:
                    self._send_events(link)
        for link in self.links:
            link.acks.poll(1_000, zmq.POLLOUT)  # let the connection to the router complete, so hello is not dropped
            self._ack(link, Hello)

    # -- input ---------------------------------------------------------------------
    def _drain_input(self, link: Link) -> int:
        stream = link.stream
        for n in range(DRAIN_LIMIT):
            try:
                frame = link.data.recv(zmq.NOBLOCK)
            except zmq.Again:
                return n
            message = decode(worker_input_decoder, frame)
            if isinstance(message, Rejection):
                reject(self.metrics, "stream", message)
                self.dead_letters.add(message.reason, f"router {link.router}", message.detail, frame)
                continue
            followed = stream.follow(message)
            if followed is None:
                self.metrics.count(f"{self.channel}.old_epoch")
                continue
            link.heard_ns = time.monotonic_ns()
            if followed:  # a (re)started router, or our first message
                link.recent.clear()
            link.retain()
            if isinstance(message, StreamState):
                stream.on_state(message)
            else:
                self._process(link, message)
        return DRAIN_LIMIT

    def _process(self, link: Link, batch: Batch) -> None:
        start = link.stream.accept(batch)
        if start is None:
            if not link.stream.gap_wanted:
                self.metrics.count(f"{self.channel}.duplicates")
            return
        started = time.perf_counter_ns()
        if self.cut:
            self.cut.before(batch.records)  # rows about to change are saved first, as they were at the cut
        self._detect(link, batch, start, time.time_ns())
        link.stream.processed(batch)
        self.metrics.counters[f"{self.channel}.processed"] += len(batch.records) - start
        self.metrics.latencies[f"{self.channel}.processing"].record_ns(time.perf_counter_ns() - started)

    def _detect(self, link: Link, batch: Batch, start: int, detected_ns: int) -> None:
        """Run the detector over batch records from `start`, its events into `link.pending`: one tight
        loop, left only when a record fails or, on a channel that sends at once (`batch_size` 1), when
        the batch's first events are found: those go to the aggregator before the rest of the batch
        is read, and any later ones at the end of the turn (at most two messages a batch).

        A failure is counted, dead-lettered and may trip the breaker; while it is
        open the rest of the batch is skipped and counted.
        """
        records, ingest_ns, seq = batch.records, batch.ingest_ns, batch.seq
        detect, faults = self.detector.process, self.faults
        at_once = self.config.channel(self.channel).batch_size == 1
        i, n = start, len(records)
        while i < n:
            if not self.breaker.allow(detected_ns):
                self.metrics.counters[f"{self.channel}.breaker_skipped"] += n - i
                return
            first, emit = i, link.pending.extend
            try:
                for i in range(first, n):  # noqa: B007 - i names the failing record below
                    if faults and records[i].ticker in faults:
                        raise InjectedFault(f"injected fault for {records[i].ticker}")
                    found = detect(records[i], seq + i, ingest_ns[i], detected_ns)
                    if found:
                        emit(found)
                        if at_once:
                            break
                else:
                    self.breaker.succeeded(n - first)
                    return
            except Exception as exc:  # a detector bug must not take the channel down
                self.breaker.succeeded(i - first)
                self._failed(records[i], seq + i, exc, detected_ns)
                i += 1
                continue
            i += 1  # record i gave the batch's first events: they go now
            self.breaker.succeeded(i - first)
            self._send_events(link)
            at_once = False

    def _failed(self, record: Record, seq: int, exc: Exception, now_ns: int) -> None:
        self.metrics.counters[f"{self.channel}.failed"] += 1
        self.dead_letters.add("detector_failed", f"{self.channel}/{self.shard} seq {seq}", repr(exc), repr(record))
        if self.breaker.failed(now_ns):
            self.metrics.count(f"{self.channel}.breaker_trips")
            log.error("%s: circuit breaker tripped after %d failures", self.name, self.breaker.failures)

    # -- output ----------------------------------------------------------------------
    def _send_events(self, link: Link) -> None:
        """Hand a stream's detected events (or just progress) to the aggregator; it confirms delivery to the router."""
        counters = self.metrics.counters
        for event in link.pending:
            counters[f"{self.channel}.events.{event.__struct_config__.tag}"] += 1  # type: ignore[attr-defined]
        stream = link.stream
        epoch, upto = max(stream.epoch, 0), stream.position
        batch = EventBatch(self.instance, self.channel, self.shard, epoch, upto, link.pending, link.router)
        self._send(encoder.encode(batch))
        link.recent.extend(link.pending)
        link.pending = []
        stream.reported = stream.position
        link.last_progress_ns = time.monotonic_ns()

    def _send(self, frame: bytes) -> None:
        """Send to the aggregator, waiting while it applies backpressure, but not past a stop."""
        while True:
            try:
                self.events.send(frame, zmq.NOBLOCK)  # the common case, without a poll per message
                return
            except zmq.Again:
                pass
            while not self.events.poll(100, zmq.POLLOUT):
                self.metrics.count("events.send_blocked")
                if self.stop:
                    self.metrics.count("events.unsent")
                    log.error("%s: aggregator not accepting events at stop; its checkpoint keeps them", self.name)
                    return

    def _checkpoint(self) -> None:
        """Cut the changed state and the stream positions (unless a cut is open, or the last one is
        still being written: this one follows it), encode up to CUT_ROWS more of its rows unless the
        store's writer is behind, and once all are handed to it, commit; it is acknowledged once it
        is durable."""
        if self.cut is None:
            if not self.store.begin(self.detector.cleared):
                return
            self.cut = Cut(self.detector, self.store.write, CHUNK_ROWS)
            self.cut_streams = [link.position() for link in self.links]
            self.last_ckpt_ns = time.monotonic_ns()
        if not self.store.behind and self.cut.step(CUT_ROWS):
            self.store.commit(self.cut.header, self.cut_streams)
            self.cut = None

    def _abandon_cut(self) -> None:
        """Drop the checkpoint being encoded (the store rolls back what it has of it); its tickers are
        marked again, so the next one writes them."""
        if self.cut:
            self.cut.abandon()
            self.store.abandon()
            self.cut = None

    def _checkpoint_done(self) -> None:
        for result in self.store.finished():
            if isinstance(result, Exception):
                self.metrics.count(f"{self.channel}.checkpoint_failed")
                log.error("%s: checkpoint not written: %s", self.name, result)
                self.detector.dirty.update(self.detector.tickers())  # the next one writes every row
                continue
            self.metrics.count(f"{self.channel}.checkpoints")
            for link, position in zip(self.links, result, strict=True):
                stream = link.stream
                if position.epoch == stream.epoch >= 0 and position.seq > stream.checkpointed:  # it moved on
                    stream.saved(position.seq)
                    self._ack(link, Checkpointed)

    def _ack(self, link: Link, kind: type[Hello | Gap | Checkpointed]) -> None:
        if not link.ack(kind, self.channel, self.shard, self.instance):
            self.metrics.count("acks.unsent")

    def _report(self) -> None:
        """Status on the bus, with what the detector ignored since this process started (its
        checkpoint carries totals from earlier processes, which those already reported)."""
        counters = self.metrics.counters
        self.metrics.gauges[f"{self.channel}.breaker_open"] = float(self.breaker.open)
        for reason, n in self.detector.ignored.items():
            if n - self.ignored_before.get(reason, 0):
                counters[f"{self.channel}.ignored.{reason}"] = n - self.ignored_before.get(reason, 0)
        self.bus.report()

    # -- config and stopping ---------------------------------------------------------
    def _apply_config(self) -> None:
        new = self.bus.receive(self.config)
        if new is None:
            return
        self.config = new
        self._abandon_cut()  # a new config may change every ticker's state, not one record's
        self.detector.configure(new.channel(self.channel))
        self.linger_ns = events_linger_ns(new.channel(self.channel))
        self.breaker.reset()  # a new version from the control plane is also how an operator resets it
        log.info("%s: applied config version %d", self.name, self.bus.version)
        self.bus.report(force=True)

    def _finish(self) -> None:
        for link in self.links:
            if link.pending or link.stream.epoch >= 0:
                self._send_events(link)
        self._abandon_cut()  # the last checkpoint, below, takes its rows as they are now
        self._checkpoint_done()  # a write in progress finishes first, then the last one
        deadline = time.monotonic() + 1.0
        while self.store.busy and time.monotonic() < deadline:
            time.sleep(0.005)
            self._checkpoint_done()
        self.store.checkpoint(self.detector, [link.position() for link in self.links])
        self.store.close()
        self._checkpoint_done()
        self._send(encoder.encode(WorkerDone(self.instance, self.channel, self.shard)))
        self.bus.report(force=True)
        for link in self.links:
            link.close()
        self.events.close()
        self.bus.close()


def events_linger_ns(channel: ChannelConfig) -> int:
    """How long found events may wait for more since the shard's last report: none on a channel
    that sends at once (`batch_size` 1), else EVENTS_NS or the channel's `timeout_ms` if shorter."""
    return 0 if channel.batch_size == 1 else min(EVENTS_NS, int(channel.timeout_ms * 1_000_000))


def main(argv: list[str] | None = None) -> int:
    p = mesh_parser("tickmesh-shard", "Run one channel shard's detectors (tickmesh-worker supervises these).")
    p.add_argument("channel", choices=CHANNELS)
    p.add_argument("shard", type=int)
    args = p.parse_args(argv)
    config = start(args, f"worker.{args.channel}.{args.shard}")
    if config is None:
        return 2
    shards = config.channel(args.channel).shards
    if not 0 <= args.shard < shards:
        log.error("shard %d out of range: channel %s has %d", args.shard, args.channel, shards)
        return 2
    sched.apply(config, args.channel, config.channel(args.channel).priority)  # priority is real down to the CPU
    return serve(
        config, "worker", lambda ctx, stop: Shard(config, ctx, args.channel, args.shard, stop).run(), args.health
    )


if __name__ == "__main__":
    raise SystemExit(main())
