"""The router process: ingest, validate, stamp, and route records to per-channel, per-shard worker streams."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import msgspec
import zmq

from router.marks import WAITING, Marks
from router.outbox import Outbox
from router.validation import Rejection as RecordRejection
from router.validation import decode_frame
from tickmesh import sched
from tickmesh.boundary import Rejection, decode_single, recv_frames, reject
from tickmesh.bus import BusClient
from tickmesh.config import CHANNELS, Config, with_endpoints
from tickmesh.deadletters import DeadLetters
from tickmesh.durable import hold, next_epoch
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, mesh_parser, serve, start
from tickmesh.schema import (
    Ack,
    Bar,
    FairMarketValue,
    Gap,
    Hello,
    Mark,
    Record,
    Trade,
    ack_decoder,
    encoder,
    mark_query_decoder,
    record_time,
)
from tickmesh.sharding import shard_of
from tickmesh.sockets import make_socket, monitor_event
from tickmesh.stream import STALE

log = logging.getLogger(__name__)

CHANNEL_OF = {Trade: "tick", Bar: "ohlcv", FairMarketValue: "fmv"}
QUIET_S = 0.3  # stopping: producers silent this long have sent their last mark
HOUSEKEEPING_NS = 10_000_000  # stream heartbeats and liveness, readiness: this often (a turn can be µs)


class Router:
    """Owns the router's sockets and state; `run` is its one loop."""

    def __init__(self, config: Config, ctx: zmq.Context, index: int = 0, ingest: str | None = None) -> None:  # type: ignore[type-arg]
        self.config, self.ctx, self.index = config, ctx, index
        ep = config.endpoints.for_router(index)  # router i's own endpoints (and state files, below)
        self.ep = ep = msgspec.structs.replace(ep, ingest=ingest) if ingest else ep
        rc = config.router
        self.name = process_name(index)
        self.lock = hold(Path(config.state.dir) / f"{self.name}.lock", "a router")
        self.epoch = next_epoch(Path(config.state.dir) / f"{self.name}.epoch")
        self.metrics = Metrics()
        self.ingest = make_socket(ctx, zmq.PULL, bind=ep.ingest, hwm=rc.ingest_hwm)
        self.sync = make_socket(ctx, zmq.REP, bind=ep.sync, hwm=1_000)
        self.acks = make_socket(ctx, zmq.PULL, bind=ep.acks, hwm=100_000)
        self.outboxes: dict[str, list[Outbox]] = {}
        started = time.monotonic_ns()
        self.pushes: dict[str, list[zmq.Socket]] = {}  # type: ignore[type-arg]
        for name in CHANNELS:
            ch = config.channel(name)
            self.outboxes[name] = [Outbox(name, s, self.epoch, ch, rc.window, started) for s in range(ch.shards)]
            self.pushes[name] = [
                make_socket(ctx, zmq.PUSH, bind=ep.shard(name, s), hwm=ch.hwm, linger_ms=0) for s in range(ch.shards)
            ]
        self.bus = BusClient(
            ctx, config, process=self.name, role="router", channels=list(CHANNELS), metrics=self.metrics
        )
        self.marks = Marks()
        self.housekeeping_ns = 0  # when heartbeats and readiness are next looked at
        self.max_future_ns = int(rc.max_future_s * 1e9)
        self.flush_order = flush_order(config)
        self.last_price: dict[str, float] = {}
        self.shard_of: dict[str, dict[str, int]] = {name: {} for name in CHANNELS}  # ticker → shard, cached
        self.keys = {name: f"{name}.received" for name in CHANNELS}
        self.dead_letters = DeadLetters(config.state.dead_letters, self.name, config.state.dead_letter_bytes)
        self.monitors = {
            sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH): name
            for name, socks in self.pushes.items()
            for sock in socks
        }

    # -- the loop ----------------------------------------------------------------
    def run(self, stop: StopFlag) -> int:
        poller = zmq.Poller()
        for sock in (self.ingest, self.acks, self.sync, self.bus.sub, *self.monitors):
            poller.register(sock, zmq.POLLIN)
        log.info("%s routing: ingest %s, epoch %d", self.name, self.ep.ingest, self.epoch)
        while not stop:
            blocked = self._ingest_blocked()
            poller.modify(self.ingest, 0 if blocked else zmq.POLLIN)
            ready = dict(poller.poll(self._timeout_ms()))
            if self.ingest in ready:
                self._drain_ingest(self.config.router.drain_limit)
            self._service(ready)
            now = time.monotonic_ns()
            self._flush(now)
            self.marks.settle()
            if now >= self.housekeeping_ns:  # per stream, not per record: every HOUSEKEEPING_NS, not every turn
                self.housekeeping_ns = now + HOUSEKEEPING_NS
                self._heartbeat(now)
                stop.health.ready(self._not_ready(now))
            self.metrics.gauges["ingest.blocked"] = float(blocked)
            self._report()
        self._drain(poller)
        self.close()
        return 0

    def _service(self, ready: dict[zmq.Socket, int]) -> None:  # type: ignore[type-arg]
        if self.acks in ready:
            self._drain_acks()
        if self.sync in ready:
            self._answer_sync()
        if self.bus.sub in ready:
            self._apply_config()
        for monitor, channel in self.monitors.items():
            if monitor in ready:
                self._count_disconnects(monitor, channel)

    def _timeout_ms(self) -> int:
        deadlines = [d for boxes in self.outboxes.values() for box in boxes if (d := box.deadline_ns()) is not None]
        if not deadlines:
            return 100
        return max(0, min(100, (min(deadlines) - time.monotonic_ns()) // 1_000_000 + 1))

    def _ingest_blocked(self) -> bool:
        """A `block` channel whose buffer is full stops ingest: backpressure instead of loss."""
        for name in CHANNELS:
            if self.config.channel(name).overflow == "block" and any(b.full for b in self.outboxes[name]):
                self.metrics.count(f"{name}.backpressure_turns")
                return True
        return False

    # -- ingest ------------------------------------------------------------------
    def _drain_ingest(self, limit: int) -> int:
        for n in range(limit):
            if n and self._ingest_blocked():  # a block channel filled up mid-drain: stop reading now
                return n
            try:
                frame = self.ingest.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return n
            if self._route_frame(frame) and self.flush_order[0] == "tick":  # nor behind a long drain
                self._flush_channel("tick", time.monotonic_ns())
        return limit

    def _route_frame(self, frame: bytes) -> int:
        """Route one ingest frame; how many trades it held. Records are placed per channel, not one by one."""
        items, rejections = decode_frame(frame, self.config.router.max_message_bytes)
        for rejection in rejections:
            self._reject(rejection)
        now_ns, mono_ns = time.time_ns(), time.monotonic_ns()
        horizon = now_ns + self.max_future_ns
        trades: list[Record] = []
        bars: list[Record] = []
        fmvs: list[Record] = []
        last_price = self.last_price
        for item in items:  # the hot loop: split by type, nothing else
            if isinstance(item, Trade):
                if item.timestamp > horizon:
                    self._reject_future(item, now_ns)
                    continue
                last_price[item.ticker] = item.price
                trades.append(item)
            elif isinstance(item, Bar):
                if item.end > horizon:
                    self._reject_future(item, now_ns)
                    continue
                bars.append(item)
            elif isinstance(item, FairMarketValue):
                if item.timestamp > horizon:
                    self._reject_future(item, now_ns)
                    continue
                if item.market_price is None and item.ticker in last_price:
                    item = msgspec.structs.replace(item, market_price=last_price[item.ticker])
                fmvs.append(item)
            else:  # a Mark: everything before it is placed, then flushed and acknowledged
                self._place_all(trades, bars, fmvs, now_ns, mono_ns)
                trades, bars, fmvs = [], [], []
                self._mark(item)
        n_trades = len(trades)
        self._place_all(trades, bars, fmvs, now_ns, mono_ns)
        return n_trades

    def _place_all(
        self, trades: list[Record], bars: list[Record], fmvs: list[Record], now_ns: int, mono_ns: int
    ) -> None:
        """Count and place a frame's records, channel by channel."""
        counters = self.metrics.counters
        for channel, records in (("tick", trades), ("ohlcv", bars), ("fmv", fmvs)):
            if records:
                counters[self.keys[channel]] += len(records)
                self._place_many(channel, records, now_ns, mono_ns)

    def _place_many(self, channel: str, records: list[Record], now_ns: int, mono_ns: int) -> None:
        """Put a channel's records in their shards' outboxes (a whole run at once when it fits)."""
        cfg = self.config.channel(channel)
        if cfg.paused and cfg.overflow != "conflate":
            self.metrics.counters[f"{channel}.paused_dropped"] += len(records)
            return
        boxes = self.outboxes[channel]
        if len(boxes) == 1:
            box = boxes[0]
            if len(box.records) + len(records) <= cfg.buffer:
                box.add_many(records, now_ns, mono_ns)
                return
        for record in records:  # several shards, or the buffer overflows: one by one
            self._place(channel, record, now_ns, mono_ns)

    def _place(self, channel: str, record: Record, now_ns: int, mono_ns: int) -> None:
        """Put a record in its shard's outbox (or count it dropped while its channel is paused)."""
        cfg = self.config.channel(channel)
        if cfg.paused and cfg.overflow != "conflate":
            self.metrics.counters[f"{channel}.paused_dropped"] += 1
            return
        shards = self.shard_of[channel]
        shard = shards.get(record.ticker)
        if shard is None:
            shard = shards[record.ticker] = shard_of(record.ticker, cfg.shards)
        box = self.outboxes[channel][shard]
        if box.full:
            self._overflow(channel, box)
        box.add(record, now_ns, mono_ns)

    def _overflow(self, channel: str, box: Outbox) -> None:
        policy = self.config.channel(channel).overflow
        if policy == "conflate":
            removed = box.conflate()
            self.metrics.count(f"{channel}.conflated", removed)
            if removed * 10 >= box.config.buffer:
                return  # conflating made room; when it cannot, fall back to dropping the oldest
        if policy != "block":
            self.metrics.count(f"{channel}.dropped_oldest", box.drop_oldest(max(1, box.config.buffer // 10)))

    def _reject(self, rejection: RecordRejection) -> None:
        scope = rejection.channel or "ingest"
        key = f"{scope}.rejected.{rejection.reason}"
        self.metrics.count(key)
        self.dead_letters.add(rejection.reason, f"ingest {self.ep.ingest}", rejection.detail, rejection.payload)
        if self.metrics.counters[key] & (self.metrics.counters[key] - 1) == 0:  # 1st, 2nd, 4th, 8th…
            log.warning("rejected (%s, seen %d times): %s", key, self.metrics.counters[key], rejection.detail)

    def _reject_future(self, record: Record, now_ns: int) -> None:
        ahead_s = (record_time(record) - now_ns) / 1e9
        detail = f"{record.ticker} stamped {ahead_s:.0f} s ahead of the router's clock (max_future_s)"
        self._reject(RecordRejection("future_timestamp", CHANNEL_OF[type(record)], detail, encoder.encode(record)))

    def _mark(self, mark: Mark) -> None:
        self._flush(time.monotonic_ns(), force=True)
        self.marks.add(mark.producer, mark.n, [box for boxes in self.outboxes.values() for box in boxes])

    def _answer_sync(self) -> None:
        """Answer one flush query: b"1" once the producer's mark is routed. REP must answer every
        request, whatever it holds, or the socket is stuck (EFSM) for every later producer."""
        try:
            frames, peer = recv_frames(self.sync)
        except zmq.Again:
            return
        query = decode_single(mark_query_decoder, frames)
        if isinstance(query, Rejection):
            reject(self.metrics, "sync", query, peer)
            reply = WAITING
        else:
            reply = self.marks.answer(query.producer, query.n)
        try:
            self.sync.send(reply)
        except zmq.ZMQError as exc:  # the asker is gone: nothing to answer
            self.metrics.count("sync.unanswered")
            log.debug("sync reply not sent: %s", exc)

    # -- batches out ---------------------------------------------------------------
    def _flush(self, now_ns: int, force: bool = False) -> None:
        for name in self.flush_order:  # highest priority (lowest number) first: the live setting
            self._flush_channel(name, now_ns, force)

    def _flush_channel(self, name: str, now_ns: int, force: bool = False) -> None:
        count = self.metrics.counters
        for box, sock in zip(self.outboxes[name], self.pushes[name], strict=True):
            while box.ready(now_ns, force):
                if not sock.poll(0, zmq.POLLOUT):
                    count[f"{name}.send_blocked"] += 1
                    break
                before = box.stream.next_seq
                data = box.take(now_ns)  # the stream holds the batch from here until it is checkpointed
                count[f"{name}.routed"] += box.stream.next_seq - before
                count[f"{name}.batches"] += 1
                try:
                    sock.send(data, zmq.NOBLOCK)
                except zmq.Again:  # the shard went between the poll and the send (a kill -9): it asks again
                    count[f"{name}.send_failed"] += 1  # for what it lacks (Hello, or Gap on the next batch)
                    break

    # -- acknowledgements and liveness --------------------------------------------------
    def _drain_acks(self) -> None:
        while True:
            try:
                frames, peer = recv_frames(self.acks)
            except zmq.Again:
                return
            ack = decode_single(ack_decoder, frames)
            if isinstance(ack, Rejection):
                reject(self.metrics, "acks", ack, peer)
                continue
            boxes = self.outboxes.get(ack.channel, [])
            if not 0 <= ack.shard < len(boxes):
                reject(self.metrics, "acks", Rejection("no_stream", f"{ack.channel} shard {ack.shard}"), peer)
                continue
            self._ack(boxes[ack.shard], ack, peer)

    def _ack(self, box: Outbox, ack: Ack, peer: str) -> None:
        stream, before = box.stream, box.stream.worker
        refused, resend = stream.on_ack(ack, time.monotonic_ns())
        if refused == STALE:  # sent to the router this one replaced: counted, nothing to say
            self.metrics.count(f"{box.channel}.stale_acks")
            return
        if refused is not None:
            reject(
                self.metrics, "acks", Rejection(refused, f"{type(ack).__name__} {ack} (stream {stream.epoch})"), peer
            )
            return
        if stream.worker != before:
            log.info("%s shard %d: worker %s holds the stream (was %s)", box.channel, box.shard, stream.worker, before)
            self.metrics.count(f"{box.channel}.worker_changes")
        if isinstance(ack, Hello | Gap):
            self.metrics.count(f"{box.channel}.resend_requests")
        sock = self.pushes[box.channel][box.shard]
        for n, data in resend:
            try:
                sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                stream.resend_failed()  # the worker will see the gap and ask again
                break
            self.metrics.count(f"{box.channel}.resent", n)

    def _heartbeat(self, now_ns: int) -> None:
        """StreamState on quiet streams, so a worker sees a lost tail; declare silent workers."""
        for name in CHANNELS:
            for box, sock in zip(self.outboxes[name], self.pushes[name], strict=True):
                self._send_state(box, sock, now_ns)
                stream = box.stream
                silent = stream.in_flight > 0 and stream.silent_worker(now_ns)
                if silent and self.metrics.gauges.get(f"{name}.{box.shard}.silent") != 1.0:
                    log.warning(
                        "%s shard %d: worker silent with %d records in flight", name, box.shard, stream.in_flight
                    )
                    self.metrics.count(f"{name}.worker_silent")
                self.metrics.gauges[f"{name}.{box.shard}.silent"] = float(silent)

    def _not_ready(self, now_ns: int) -> str:
        """Why /readyz fails: streams whose worker has not said hello, or has been silent for LIVENESS beats."""
        streams = [box.stream for boxes in self.outboxes.values() for box in boxes]
        silent = [f"{s.channel}.{s.shard}" for s in streams if not s.worker or s.silent_worker(now_ns)]
        return f"no live worker on {', '.join(silent)}" if silent else ""

    def _send_state(self, box: Outbox, sock: zmq.Socket, now_ns: int, final: bool = False) -> None:  # type: ignore[type-arg]
        state = box.stream.heartbeat(now_ns, final)
        if state is not None:
            with contextlib.suppress(zmq.Again):  # the worker is busy: it is alive and will be told next time
                sock.send(state, zmq.NOBLOCK)

    def _count_disconnects(self, monitor: zmq.Socket, channel: str) -> None:  # type: ignore[type-arg]
        while monitor.poll(0):
            event, _ = monitor_event(monitor)
            kind = "disconnects" if event == zmq.EVENT_DISCONNECTED else "handshake_failed"
            self.metrics.count(f"{channel}.{kind}")

    # -- config and metrics -------------------------------------------------------------
    def _apply_config(self) -> None:
        new = self.bus.receive(self.config)
        if new is None:
            return
        self.config = new
        self.flush_order = flush_order(new)
        for name in CHANNELS:
            for box in self.outboxes[name]:
                box.config = new.channel(name)
        log.info("applied config version %d", self.bus.version)
        self._report(force=True)

    def _report(self, force: bool = False) -> None:
        if not (force or self.bus.due):  # the gauges are only read when a Status goes out
            return
        for name in CHANNELS:
            boxes = self.outboxes[name]
            self.metrics.gauges[f"{name}.queue_depth"] = float(sum(len(b.records) for b in boxes))
            self.metrics.gauges[f"{name}.unacked"] = float(sum(b.stream.in_flight for b in boxes))
        self.bus.report(force=force)

    # -- stopping ----------------------------------------------------------------------
    def _drain(self, poller: zmq.Poller) -> None:
        """Stopping: go on routing what producers send and answering their flush marks, until every
        batch is delivered and producers have been quiet for QUIET_S (or the stop budget is up); then end
        each stream, and refuse the marks whose records could not be routed in time."""
        deadline = time.monotonic() + self.config.process.stop_budget(1.5)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            poller.modify(self.ingest, 0 if self._ingest_blocked() else zmq.POLLIN)
            ready = dict(poller.poll(10))
            if (self.ingest in ready and self._drain_ingest(self.config.router.drain_limit)) or self.sync in ready:
                quiet_since = time.monotonic()
            self._service(ready)
            self._flush(time.monotonic_ns(), force=True)
            self.marks.settle()
            if self._all_drained() and not self.marks.pending and time.monotonic() - quiet_since >= QUIET_S:
                break
        for name in CHANNELS:
            for box, sock in zip(self.outboxes[name], self.pushes[name], strict=True):
                if not box.delivered_all:
                    undelivered = box.stream.last_seq - box.stream.delivered + len(box.records)
                    log.warning("%s shard %d: %d records undelivered at exit", name, box.shard, undelivered)
                    self.metrics.count(f"{name}.undelivered_at_exit", undelivered)
                self._send_state(box, sock, time.monotonic_ns(), final=True)
        refused = self.marks.refuse_pending()
        if refused:
            log.warning("stopping with %d flush marks unrouted: their producers are told so", refused)
            self.metrics.count("sync.refused", refused)
            end = time.monotonic() + QUIET_S
            while time.monotonic() < end:  # answer the producers that ask now
                self._service(dict(poller.poll(10)))
        self._report(force=True)

    def _all_drained(self) -> bool:
        return all(box.delivered_all for boxes in self.outboxes.values() for box in boxes)

    def close(self) -> None:
        for sock in self.pushes["tick"] + self.pushes["ohlcv"] + self.pushes["fmv"]:
            sock.disable_monitor()
        for sock in (*self.monitors, self.ingest, self.sync, self.acks):
            sock.close(0)
        for socks in self.pushes.values():
            for sock in socks:
                sock.close(linger=200)
        self.bus.close()


def process_name(index: int) -> str:
    """`router` for router 0 (the only one by default), `router.<i>` for the others: the name on the
    status bus and of its state files (router.<i>.epoch, router.<i>.lock) and dead-letter log."""
    return "router" if index == 0 else f"router.{index}"


def flush_order(config: Config) -> list[str]:
    """Channels by their live priority, highest (lowest number) first; ties in channel order."""
    return sorted(CHANNELS, key=lambda name: config.channel(name).priority)


def main(argv: list[str] | None = None) -> int:
    p = mesh_parser("tickmesh-router", "Validate, stamp and route records from ingest to the channel workers.")
    p.add_argument("--ingest", help="ingest endpoint to bind (default from config: router i's own)")
    p.add_argument("--index", type=int, default=0, help="which of the [router] count routers this is (default 0)")
    args = p.parse_args(argv)
    config = start(args, process_name(args.index))
    if config is None:
        return 2
    if not 0 <= args.index < config.router.count:
        log.error("--index %d out of range: [router] count is %d", args.index, config.router.count)
        return 2
    if args.index == 0:
        config = with_endpoints(config, ingest=args.ingest)
    sched.apply(config, "router")
    index, ingest = args.index, args.ingest
    return serve(config, "router", lambda ctx, stop: Router(config, ctx, index, ingest).run(stop), args.health)
