"""The router process: ingest, validate, stamp, and route records to per-channel, per-shard worker streams."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque

import msgspec
import zmq

from router.outbox import Outbox
from router.validation import Rejection, decode_frame
from tickmesh.bus import BusClient
from tickmesh.config import CHANNELS, Config, with_endpoints
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, parser, start
from tickmesh.schema import (
    EndOfStream,
    FairMarketValue,
    IngestItem,
    Mark,
    Trade,
    ack_decoder,
    encoder,
    mark_query_decoder,
)
from tickmesh.sharding import shard_of
from tickmesh.sockets import EndpointError, make_socket

log = logging.getLogger(__name__)

DRAIN_S = 3.5  # SIGTERM → exit well inside honcho's 5 s
MARKS_KEPT = 10_000
DEAD_LETTERS_KEPT = 1_000
_TYPE_CHANNEL = {Trade: "tick", FairMarketValue: "fmv"}


class Router:
    """Owns the router's sockets and state; `run` is its one loop."""

    def __init__(self, config: Config, ctx: zmq.Context) -> None:  # type: ignore[type-arg]
        self.config, self.ctx = config, ctx
        ep, rc = config.endpoints, config.router
        self.epoch = time.time_ns()
        self.metrics = Metrics()
        self.ingest = make_socket(ctx, zmq.PULL, bind=ep.ingest, hwm=rc.ingest_hwm)
        self.sync = make_socket(ctx, zmq.REP, bind=ep.sync, hwm=1_000)
        self.acks = make_socket(ctx, zmq.PULL, bind=ep.acks, hwm=100_000)
        self.outboxes: dict[str, list[Outbox]] = {}
        self.pushes: dict[str, list[zmq.Socket]] = {}  # type: ignore[type-arg]
        for name in CHANNELS:
            ch = config.channel(name)
            self.outboxes[name] = [Outbox(name, s, self.epoch, ch, rc.window) for s in range(ch.shards)]
            self.pushes[name] = [
                make_socket(ctx, zmq.PUSH, bind=ep.shard(name, s), hwm=ch.hwm, linger_ms=0)
                for s in range(ch.shards)
            ]
        self.bus = BusClient(ctx, config, process="router", role="router", channels=list(CHANNELS), metrics=self.metrics)
        self.marks: OrderedDict[str, int] = OrderedDict()
        self.last_price: dict[str, float] = {}
        self.dead_letters: deque[tuple[int, Rejection]] = deque(maxlen=DEAD_LETTERS_KEPT)

    # -- the loop ----------------------------------------------------------------
    def run(self, stop: StopFlag) -> int:
        poller = zmq.Poller()
        for sock in (self.ingest, self.acks, self.sync, self.bus.sub):
            poller.register(sock, zmq.POLLIN)
        log.info("routing: ingest %s, epoch %d", self.config.endpoints.ingest, self.epoch)
        while not stop:
            blocked = self._ingest_blocked()
            poller.modify(self.ingest, 0 if blocked else zmq.POLLIN)
            ready = dict(poller.poll(self._timeout_ms()))
            if self.ingest in ready:
                self._drain_ingest(self.config.router.drain_limit)
            self._service(ready)
            self._flush(time.monotonic_ns())
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
            try:
                frame = self.ingest.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return n
            self._route_frame(frame)
            if n % 64 == 63:  # ticks waiting behind a long drain go out now
                self._flush_channel("tick", time.monotonic_ns())
        return limit

    def _route_frame(self, frame: bytes) -> None:
        items, rejections = decode_frame(frame, self.config.router.max_message_bytes)
        for rejection in rejections:
            self._reject(rejection)
        now_ns, mono_ns = time.time_ns(), time.monotonic_ns()
        for item in items:
            if isinstance(item, Mark):
                self._mark(item)
            else:
                self._route(item, now_ns, mono_ns)

    def _route(self, record: IngestItem, now_ns: int, mono_ns: int) -> None:
        channel = _TYPE_CHANNEL.get(type(record), "ohlcv")
        count = self.metrics.counters
        count[f"{channel}.received"] += 1
        if isinstance(record, Trade):
            self.last_price[record.ticker] = record.price
        elif isinstance(record, FairMarketValue) and record.market_price is None:
            last = self.last_price.get(record.ticker)
            if last is not None:
                record = msgspec.structs.replace(record, market_price=last)
        cfg = self.config.channel(channel)
        if cfg.paused and cfg.overflow != "conflate":
            count[f"{channel}.paused_dropped"] += 1
            return
        box = self.outboxes[channel][shard_of(record.ticker, cfg.shards)]
        if box.full:
            self._overflow(channel, box)
        box.add(record, now_ns, mono_ns)  # type: ignore[arg-type]

    def _overflow(self, channel: str, box: Outbox) -> None:
        policy = self.config.channel(channel).overflow
        if policy == "conflate":
            removed = box.conflate()
            self.metrics.count(f"{channel}.conflated", removed)
            if removed * 10 >= box.config.buffer:
                return  # conflating made room; when it cannot, fall back to dropping the oldest
        if policy != "block":
            self.metrics.count(f"{channel}.dropped_oldest", box.drop_oldest(max(1, box.config.buffer // 10)))

    def _reject(self, rejection: Rejection) -> None:
        scope = rejection.channel or "ingest"
        key = f"{scope}.rejected.{rejection.reason}"
        self.metrics.count(key)
        self.dead_letters.append((time.time_ns(), rejection))
        if self.metrics.counters[key] & (self.metrics.counters[key] - 1) == 0:  # 1st, 2nd, 4th, 8th…
            log.warning("rejected (%s, seen %d times): %s", key, self.metrics.counters[key], rejection.detail)

    def _mark(self, mark: Mark) -> None:
        self._flush(time.monotonic_ns(), force=True)
        self.marks[mark.producer] = max(mark.n, self.marks.pop(mark.producer, -1))
        while len(self.marks) > MARKS_KEPT:
            self.marks.popitem(last=False)

    def _answer_sync(self) -> None:
        try:
            query = mark_query_decoder.decode(self.sync.recv(zmq.NOBLOCK))
            seen = self.marks.get(query.producer, -1) >= query.n
        except (msgspec.DecodeError, msgspec.ValidationError):
            seen = False
        except zmq.Again:
            return
        self.sync.send(b"1" if seen else b"0")

    # -- batches out ---------------------------------------------------------------
    def _flush(self, now_ns: int, force: bool = False) -> None:
        for name in CHANNELS:  # priority order: tick first
            self._flush_channel(name, now_ns, force)

    def _flush_channel(self, name: str, now_ns: int, force: bool = False) -> None:
        count = self.metrics.counters
        for box, sock in zip(self.outboxes[name], self.pushes[name], strict=True):
            while box.ready(now_ns, force):
                if not sock.poll(0, zmq.POLLOUT):
                    count[f"{name}.send_blocked"] += 1
                    break
                before = box.next_seq
                sock.send(box.take(now_ns), zmq.NOBLOCK)
                count[f"{name}.routed"] += box.next_seq - before
                count[f"{name}.batches"] += 1

    # -- acknowledgements ------------------------------------------------------------
    def _drain_acks(self) -> None:
        while True:
            try:
                ack = ack_decoder.decode(self.acks.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.metrics.count("acks.rejected")
                continue
            boxes = self.outboxes.get(ack.channel, [])
            if ack.epoch != self.epoch or not 0 <= ack.shard < len(boxes):
                continue
            box = boxes[ack.shard]
            box.ack(ack.seq)
            if ack.resend or ack.worker != box.worker:
                self._resend(box, ack.worker)

    def _resend(self, box: Outbox, worker: str) -> None:
        """A new worker instance, or one that saw a gap: send every unacknowledged batch again."""
        sock = self.pushes[box.channel][box.shard]
        if box.worker and box.worker != worker:
            log.info("worker %s took over %s shard %d", worker, box.channel, box.shard)
        box.worker = worker
        for data in box.unacked_batches():
            try:
                sock.send(data, zmq.NOBLOCK)
                self.metrics.count(f"{box.channel}.resent_batches")
            except zmq.Again:
                break  # the worker will see the gap and ask again

    # -- config and metrics -------------------------------------------------------------
    def _apply_config(self) -> None:
        new = self.bus.receive(self.config)
        if new is None:
            return
        self.config = new
        for name in CHANNELS:
            for box in self.outboxes[name]:
                box.config = new.channel(name)
        log.info("applied config version %d", self.bus.version)
        self.bus.report(force=True)

    def _report(self) -> None:
        for name in CHANNELS:
            boxes = self.outboxes[name]
            self.metrics.gauges[f"{name}.queue_depth"] = float(sum(len(b.records) for b in boxes))
            self.metrics.gauges[f"{name}.unacked"] = float(sum(b.in_flight for b in boxes))
        self.bus.report()

    # -- stopping ----------------------------------------------------------------------
    def _drain(self, poller: zmq.Poller) -> None:
        """Route what producers already sent, flush every batch, wait for acks, then end each stream."""
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and self._drain_ingest(self.config.router.drain_limit):
            self._flush(time.monotonic_ns(), force=True)
            self._drain_acks()
        while time.monotonic() < deadline and not self._all_drained():
            ready = dict(poller.poll(10))
            self._service(ready)
            self._flush(time.monotonic_ns(), force=True)
        for name in CHANNELS:
            for box, sock in zip(self.outboxes[name], self.pushes[name], strict=True):
                if not box.drained:
                    log.warning("%s shard %d: %d records unacknowledged at exit", name, box.shard, box.in_flight)
                eos = EndOfStream(name, box.shard, self.epoch, box.last_seq)
                try:
                    sock.send(encoder.encode(eos), zmq.NOBLOCK)
                except zmq.Again:
                    pass
        self.bus.report(force=True)

    def _all_drained(self) -> bool:
        return all(box.drained for boxes in self.outboxes.values() for box in boxes)

    def close(self) -> None:
        for sock in (self.ingest, self.sync, self.acks, *(s for socks in self.pushes.values() for s in socks)):
            sock.close(linger=200)
        self.bus.close()


def main(argv: list[str] | None = None) -> int:
    p = parser("tickmesh-router", "Validate, stamp and route records from ingest to the channel workers.")
    p.add_argument("--ingest", help="ingest endpoint to bind (default from config)")
    args = p.parse_args(argv)
    config = start(args, "router")
    if config is None:
        return 2
    config = with_endpoints(config, ingest=args.ingest)
    stop = StopFlag()
    ctx = zmq.Context()
    try:
        return Router(config, ctx).run(stop)
    except EndpointError as exc:
        log.error("%s", exc)
        return 2
    finally:
        ctx.term()

