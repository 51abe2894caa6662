"""No silent loss: crashes, stalls, slow and late subscribers, floods, SIGTERM, poison records.

The conservation checker compares every event a subscriber saw with what an
uninterrupted run of the same detectors over the same records produces
(computed in this process): nothing missing, nothing published twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from functools import partial

import msgspec
import pytest
import zmq

from aggregator.app import CONFIRM_NS
from feeds.market import Market, MarketSpec, symbol_names
from subscriber.client import Subscriber
from tests.mesh import Mesh, collect, drain, poll_until
from tickmesh.config import CHANNELS, Config
from tickmesh.schema import (
    Bar,
    Batch,
    Delivered,
    EventBatch,
    FairMarketValue,
    Hello,
    High,
    Publication,
    Record,
    Trade,
    ack_decoder,
    aggregator_input_decoder,
    encoder,
    event_decoder,
)
from tickmesh.sharding import shard_of
from workers.detectors import make_detector
from workers.shard import PROGRESS_NS

S = 1_000_000_000
QUIET = {"aggregator": {"max_event_age_s": 0}}  # these streams include history; staleness is tested elsewhere


def market(
    seed: int, seconds: float, tick: int = 40, ohlcv: int = 60, fmv: int = 10, rate: float = 2_000
) -> list[Record]:
    spec = MarketSpec(
        tick_symbols=symbol_names(tick, [], "T"),
        ohlcv_symbols=symbol_names(ohlcv, [], "B"),
        fmv_symbols=symbol_names(tick, [], "T")[:fmv],
        event_rate=rate,
        start_ns=time.time_ns(),
        seed=seed,
        duration_s=seconds,
        volatility=3.0,
    )
    return [r for chunk in Market(spec) for r in chunk]


def reference(records: list[Record], config: Config) -> set[str]:
    """The event ids an uninterrupted run publishes: the same detectors, in this process, in order."""
    detectors = {ch: make_detector(ch, config.channel(ch)) for ch in CHANNELS}
    last_price: dict[str, float] = {}
    ids: set[str] = set()
    for record in records:
        if isinstance(record, Trade):
            last_price[record.ticker] = record.price
            channel = "tick"
        elif isinstance(record, Bar):
            channel = "ohlcv"
        else:
            channel = "fmv"
            if record.market_price is None and record.ticker in last_price:
                record = msgspec.structs.replace(record, market_price=last_price[record.ticker])
        ids.update(e.id for e in detectors[channel].process(record, 0, 0, 0))
    return ids


class Recorder:
    """A subscriber reading in a thread for the whole test, so nothing piles up at the publisher."""

    def __init__(self, mesh: Mesh, hold: threading.Event | None = None, hwm: int = 100_000) -> None:
        self.ctx = zmq.Context()  # its own I/O thread, as a separate subscriber process would have
        self.sub = mesh.subscriber(ctx=self.ctx, hwm=hwm)
        # Sees the publisher's connection end: everything it sent is in our queue by then.
        self.monitor = self.sub.sub.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.hold = hold  # a slow reader: after its first event it stops reading until this is set
        self.received: list[Publication] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.closed = False
        mesh.on_close(self.stop)  # stopped even if the test fails first

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                publication = self.sub.recv(timeout_ms=50)
            except zmq.ZMQError:  # closed under us: the test is failing and tearing down
                return
            if publication is not None:
                self.received.append(publication)
                if self.hold is not None:
                    self.hold.wait(60)
                    self.hold = None

    def holds(self, count: int) -> bool:
        return len(self.received) >= count

    def ids(self) -> list[str]:
        return [p.event.id for p in self.received]

    def wait_for(self, expected: set[str], mesh: Mesh, timeout: float = 30.0) -> None:
        """Every expected event, then everything the aggregator published (a duplicate would be in it)."""
        poll_until(lambda: expected <= set(self.ids()), timeout, what=f"{len(expected)} events")
        published = settled(mesh)
        poll_until(lambda: len(self.received) >= published, timeout, what=f"{published} published events")

    def wait_for_publisher_gone(self, timeout: float = 10.0) -> None:
        """After the aggregator exited: its connection has ended and we have read all it sent."""
        poll_until(lambda: self.monitor.poll(0), timeout, what="the publisher's connection to end")
        self.stopped.set()
        self.thread.join(5)
        while (publication := self.sub.recv(timeout_ms=0)) is not None:
            self.received.append(publication)

    def stop(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stopped.set()
        self.thread.join(5)
        self.sub.sub.disable_monitor()
        self.monitor.close(0)
        self.sub.close()
        self.ctx.term()


def settled(mesh: Mesh, timeout: float = 30.0) -> int:
    """Wait until the router holds no record unacknowledged — the aggregator has published the events
    of every record accepted so far — and return how many events the aggregator has published."""

    def nothing_held() -> bool:
        mesh.counters()  # waits for fresh reports
        gauges = mesh.statuses["router"].gauges
        held = [value for name, value in gauges.items() if name.endswith(".unacked")]
        return len(held) == len(CHANNELS) and not any(held)

    poll_until(nothing_held, timeout, interval=0.05, what="the router to hold nothing unacknowledged")
    return mesh.counters().get("published", 0)  # a report sent after the router's: it counts every event


def push_paced(mesh: Mesh, records: list[Record], chunk: int = 1_000, during=None, at: float = 0.4) -> None:
    """Push in chunks (about 2 s in all); call `during()` once `at` of the records are sent; then flush."""
    producer = mesh.producer()
    fired = during is None
    for i in range(0, len(records), chunk):
        producer.send(records[i : i + chunk])
        if not fired and i >= at * len(records):
            during()
            fired = True
        time.sleep(0.01)
    producer.flush()


def assert_conserved(recorder: Recorder, expected: set[str]) -> None:
    ids = recorder.ids()
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"published twice: {duplicates[:5]}"
    assert set(ids) == expected, f"missing {len(expected - set(ids))}, unexpected {len(set(ids) - expected)}"


def test_a_subscriber_counts_what_it_missed_of_a_killed_publishers_epoch_and_reads_the_new_one_from_seq_1(
    mesh: Mesh,
) -> None:
    """Disconnected while the aggregator publishes 30 more (a network outage), then the aggregator is killed
    and restarted: the new ring says the old epoch ended at 80, so the 30 are counted missed and lost, and
    the new epoch is read from its first publication whenever the subscriber reconnects."""
    sub = mesh.subscriber()
    mesh.push(_highs(10, 6))  # 50 highs
    assert [p.seq for p in collect(sub, lambda r: len(r) >= 50)] == list(range(1, 51))
    sub.sub.disconnect(mesh.endpoints.publish)
    mesh.push(_highs(10, 4, prefix="L"))  # 30 more, published while we are away
    poll_until(lambda: mesh.counters().get("published") == 80, what="80 published")
    epoch = sub.epoch
    poll_until(lambda: mesh.recorded_end(epoch) == 80, 5, what="the epoch's end on disk")  # then the kill -9
    mesh.stop("aggregator", signal.SIGKILL)
    mesh.spawn("aggregator.2", "-m", "aggregator")
    mesh.push(_highs(10, 3, prefix="E"))  # 20 in the new epoch
    sub.sub.connect(mesh.endpoints.publish)
    received = collect(sub, lambda r: len(r) >= 20, timeout=20)
    received += drain(sub, quiet_ms=300)
    assert [(p.seq, p.event.ticker[0]) for p in received] == [(seq, "E") for seq in range(1, 21)]
    # lost: the 30; missed: those too, and any of the 20 published before we reconnected (filled from the ring)
    assert sub.lost == 30 and 30 <= sub.missed <= 50


@pytest.mark.slow  # fault injection
# 400 tick symbols: each shard's checkpoints hold about 200 rows, encoded over several loop turns
# while later trades keep changing them (workers/snapshot.py, Cut); 4,000: about 2,000 rows, streamed
# to the store in more than one chunk (workers/store.py, CHUNK_ROWS)
@pytest.mark.parametrize(("seed", "tick"), [(1, 40), (2, 40), (3, 40), (4, 400), (5, 4_000)])
def test_kill_9_of_a_worker_shard_loses_and_duplicates_nothing(mesh_factory, seed: int, tick: int) -> None:
    mesh = mesh_factory({"channels": {"tick": {"shards": 2}}, "state": {"checkpoint_s": 0.2}, **QUIET}).start()
    records = market(seed, seconds=60, tick=tick)
    expected = reference(records, mesh.config)
    recorder = Recorder(mesh)
    victim = mesh.pid("worker.tick.0")
    push_paced(mesh, records, during=lambda: os.kill(victim, signal.SIGKILL))
    recorder.wait_for(expected, mesh)
    recorder.stop()
    assert_conserved(recorder, expected)
    counters = mesh.counters()
    assert counters["tick.crashes"] == 1 and counters["tick.restarts"] == 1
    assert mesh.pid("worker.tick.0") != victim


@pytest.mark.slow  # fault injection
def test_sigstop_of_a_worker_loses_nothing_and_other_shards_flow_on(mesh_factory) -> None:
    mesh = mesh_factory({"channels": {"tick": {"shards": 2}}, **QUIET}).start()
    records = market(7, seconds=60)
    expected = reference(records, mesh.config)
    recorder = Recorder(mesh)
    victim = mesh.pid("worker.tick.1")
    others = {i for i in expected if i.startswith("tick:") and shard_of(i.split(":")[2], 2) == 0}
    assert others, "the market gave shard 0 nothing to detect"
    os.kill(victim, signal.SIGSTOP)
    try:
        push_paced(mesh, records)
        # Shard 0's events all arrive while shard 1 is still stopped: they do not wait for it.
        poll_until(lambda: others <= set(recorder.ids()), 20, what="shard 0's events while shard 1 is stopped")
    finally:
        os.kill(victim, signal.SIGCONT)
    recorder.wait_for(expected, mesh)
    recorder.stop()
    assert_conserved(recorder, expected)


def _highs(tickers: int, per_ticker: int, prefix: str = "H") -> list[Record]:
    """Trades 2 s apart, each 0.2 % above the last: every one after a ticker's first is a new high and
    nothing else (a surge needs 2.5 % within 5 s at these prices)."""
    now = time.time_ns()
    names = symbol_names(tickers, [], prefix)
    return [Trade(t, 100.0 + 0.2 * step, 1, now + step * 2 * S) for step in range(per_ticker) for t in names]


def test_a_slow_subscriber_fills_its_gaps_from_the_ring_and_a_normal_one_sees_everything(mesh_factory) -> None:
    mesh = mesh_factory({"aggregator": {"pub_hwm": 4_000, "replay_size": 50_000}}).start()
    normal = Recorder(mesh)
    reading = threading.Event()
    slow = Recorder(mesh, hold=reading, hwm=20)  # reads nothing more until the normal one has everything
    records = _highs(1_000, 13)  # 1,000 × 12 new highs, far more than the slow reader's queues hold
    # One step of every ticker at a time (1,000 highs), each read by the normal subscriber before the
    # next: its queue at the publisher (pub_hwm 4,000) never fills, however loaded the machine.
    for step in range(13):
        mesh.push(records[step * 1_000 : (step + 1) * 1_000])
        poll_until(partial(normal.holds, step * 1_000), 20, what="the normal subscriber")
    total = 1_000 * 12
    reading.set()
    poll_until(lambda: len(slow.received) >= total, 60, what="the slow subscriber")
    assert settled(mesh) == total
    normal.stop()
    slow.stop()
    assert [p.seq for p in normal.received] == list(range(1, total + 1))
    assert normal.sub.gaps == 0
    assert [p.seq for p in slow.received] == list(range(1, total + 1))
    assert slow.sub.gaps > 0 and slow.sub.lost == 0


def test_a_late_joiner_gets_the_last_n_then_the_live_stream_without_a_gap(mesh: Mesh) -> None:
    first = _highs(10, 6)  # 50 highs
    mesh.push(first)
    poll_until(lambda: mesh.counters().get("published") == 50, what="50 published")
    late = Subscriber(mesh.endpoints.publish, replay=mesh.endpoints.replay, last=20, ctx=mesh.ctx)
    mesh._sockets.append(late.sub)
    poll_until(lambda: late.sub.poll(50), what="a heartbeat")
    mesh.push(_highs(1, 6, prefix="L"))  # 5 more highs
    received = collect(late, lambda r: len(r) >= 25)
    received += drain(late, quiet_ms=300)
    assert [p.seq for p in received] == list(range(31, 56))  # the last 20 of 50, then 5 live
    assert late.gaps == 0 and late.lost == 0


@pytest.mark.slow  # fault injection
def test_an_ohlcv_flood_conflates_while_every_tick_flows(mesh_factory) -> None:
    mesh = mesh_factory({"channels": {"ohlcv": {"buffer": 2_000}}, "router": {"window": 5_000}, **QUIET}).start()
    recorder = Recorder(mesh)
    ohlcv = mesh.pid("worker.ohlcv.0")
    os.kill(ohlcv, signal.SIGSTOP)  # OHLCV cannot keep up at all
    try:
        now = time.time_ns()
        bars = [
            Bar(f"B{i % 500}", 10.0, 10.5, 9.5, 10.2, 100, now - (61 - k) * 60 * S, now - (60 - k) * 60 * S)
            for k in range(60)
            for i in range(500)
        ]
        ticks = _highs(50, 20)  # 50 × 19 new highs
        producer = mesh.producer()
        for j in range(30):  # ticks interleaved with the flood
            producer.send(bars[j * 1_000 : (j + 1) * 1_000])
            producer.send(ticks[j * 33 : (j + 1) * 33])
        producer.send(ticks[990:])
        poll_until(
            lambda: len([p for p in recorder.received if p.event.source == "tick"]) >= 50 * 19,
            20,
            what="every tick event while OHLCV is stalled",
        )
    finally:
        os.kill(ohlcv, signal.SIGCONT)
    producer.flush()  # only now: a flush waits until every record before it is handed to its worker
    recorder.stop()
    counters = mesh.counters()
    assert counters["tick.received"] == counters["tick.processed"] == len(ticks)
    assert counters["ohlcv.conflated"] > 0
    assert "tick.dropped_oldest" not in counters and "tick.conflated" not in counters


def test_sigterm_under_load_publishes_the_events_of_every_accepted_record(mesh_factory) -> None:
    mesh = mesh_factory(QUIET).start()
    records = market(11, seconds=30)
    expected = reference(records, mesh.config)
    recorder = Recorder(mesh)
    producer = mesh.producer()
    for i in range(0, len(records), 1_000):
        producer.send(records[i : i + 1_000])
    producer.flush()  # the router has every record: now stop everything, as honcho does
    for proc in mesh.procs.values():
        proc.send_signal(signal.SIGTERM)
    for name, proc in mesh.procs.items():
        assert proc.wait(6) == 0, mesh.log(name)
    recorder.wait_for_publisher_gone()
    recorder.stop()
    assert_conserved(recorder, expected)


@pytest.mark.slow  # fault injection
def test_a_poison_fmv_record_trips_the_breaker_and_other_channels_flow_unchanged(mesh_factory) -> None:
    mesh = mesh_factory({"channels": {"fmv": {"breaker_min_records": 10}}, **QUIET})
    mesh.env["TICKMESH_FAULT_TICKERS"] = "POISON"
    mesh.start()
    recorder = Recorder(mesh)
    now = time.time_ns()
    poison = [FairMarketValue("POISON", 10.0, now + i * S, market_price=9.0) for i in range(30)]
    records = market(5, seconds=30)
    expected = {i for i in reference(records, mesh.config) if not i.startswith("fmv:")}
    mesh.push(poison + records)
    poll_until(lambda: expected <= {p.event.id for p in recorder.received}, 20, what="tick and ohlcv events")
    recorder.stop()
    counters = mesh.counters()
    assert counters["fmv.breaker_trips"] == 1
    assert counters["fmv.failed"] == 5 and counters["fmv.breaker_skipped"] >= 25  # half of a run of 10 failed
    dead = (mesh.dir / ".tickmesh/dead-letters/worker.fmv.0.jsonl").read_text().splitlines()
    assert len(dead) == 5 and all("POISON" in line and "detector_failed" in line for line in dead)
    assert counters["tick.processed"] == counters["tick.received"]


def confirmations(mesh: Mesh, batches: int, records: int, gap_s: float) -> tuple[list[int], float]:
    """Play the router (bind the acks socket the aggregator connects to) and a tick worker: after a
    first batch, `batches` event batches `gap_s` apart, each covering the next `records` records of
    one stream. The positions the aggregator confirmed after the first, and the seconds they took."""
    acks = mesh.ctx.socket(zmq.PULL)
    acks.bind(mesh.endpoints.acks)
    events = mesh.ctx.socket(zmq.PUSH)
    events.connect(mesh.endpoints.events)
    mesh.on_close(partial(mesh.stop, "aggregator", signal.SIGKILL))  # SIGTERM: it would wait for absent workers
    mesh.on_close(lambda: acks.close(0))
    mesh.on_close(lambda: events.close(0))
    mesh.spawn("aggregator", "-m", "aggregator")
    confirmed: list[int] = []

    def read_acks() -> int:
        """Read what has arrived; the newest position confirmed (-1: none yet)."""
        while acks.poll(0):
            ack = ack_decoder.decode(acks.recv())
            assert isinstance(ack, Delivered) and (ack.channel, ack.shard, ack.epoch) == ("tick", 0, 7)
            confirmed.append(ack.seq)
        return confirmed[-1] if confirmed else -1

    now = time.time_ns()
    high = High("tick:high:C:0", "C", "tick", 1, now, 10.0, 1, now, now)
    events.send(encoder.encode(EventBatch("worker.tick.0:test", "tick", 0, 7, 0, [high])))
    poll_until(lambda: read_acks() == 0, 15, what="the aggregator confirming")  # it is up
    confirmed.clear()
    start = time.monotonic()
    for upto in range(records, (batches + 1) * records, records):
        events.send(encoder.encode(EventBatch("worker.tick.0:test", "tick", 0, 7, upto, [])))
        time.sleep(gap_s)
        read_acks()
    poll_until(lambda: read_acks() == batches * records, 15, what="the last batch confirmed")
    assert confirmed == sorted(confirmed)  # cumulative: never behind one sent before
    return confirmed, time.monotonic() - start


def test_the_aggregator_confirms_at_most_every_100_ms_and_its_newest_confirmation_always_arrives(mesh_factory) -> None:
    """Each confirmation wakes the router, so a stream's go at most every 100 ms, cumulative; the newest arrives.

    400 event batches half a millisecond apart: one confirmation per batch (as before) would be 400.
    """
    confirmed, elapsed = confirmations(mesh_factory(), batches=400, records=1, gap_s=0.0005)
    # every 100 ms at most, plus the heartbeat's repeat (every second)
    assert len(confirmed) <= elapsed / (CONFIRM_NS / 1e9) + 1 + (elapsed + 1), f"{len(confirmed)} in {elapsed:.3f} s"


def test_a_small_router_window_is_confirmed_a_quarter_at_a_time_without_waiting_100_ms(mesh_factory) -> None:
    """With `router.window` 40, waiting 100 ms would hold the router's stream: a confirmation goes as soon as
    10 records (a quarter) are covered. 100 batches of 5 records, 2 ms apart: about 50, where the 100 ms
    rule alone would send at most one per 50 batches."""
    confirmed, elapsed = confirmations(mesh_factory({"router": {"window": 40}}), batches=100, records=5, gap_s=0.002)
    assert len(confirmed) > elapsed / (CONFIRM_NS / 1e9) + 2 + elapsed, f"{len(confirmed)} in {elapsed:.3f} s"


def around_tick_shard(mesh: Mesh) -> tuple[zmq.Socket, zmq.Socket]:  # type: ignore[type-arg]
    """Play the router and the aggregator for tick shard 0, started here: its data socket (epoch 7) and
    its events socket, once it said hello."""
    data, acks, events = mesh.ctx.socket(zmq.PUSH), mesh.ctx.socket(zmq.PULL), mesh.ctx.socket(zmq.PULL)
    for sock, endpoint in ((data, mesh.endpoints.shard("tick", 0)), (acks, mesh.endpoints.acks)):
        sock.bind(endpoint)
    events.bind(mesh.endpoints.events)
    mesh.on_close(partial(mesh.stop, "worker.tick.0", signal.SIGKILL))  # a SIGTERM would wait for this router
    for sock in (data, acks, events):
        mesh.on_close(partial(sock.close, 0))
    mesh.spawn("worker.tick.0", "-m", "workers.shard", "tick", "0")
    assert acks.poll(15_000) and isinstance(ack_decoder.decode(acks.recv()), Hello)
    return data, events


def event_messages(mesh: Mesh, records: list[Record]) -> list[tuple[int, list[str]]]:
    """Send `records` to tick shard 0 as one batch; its event messages for it, each as (the stream
    position it covers, its events' tickers)."""
    data, events = around_tick_shard(mesh)
    now = time.time_ns()
    data.send(encoder.encode(Batch("tick", 0, 7, 0, 0, [now] * len(records), records)))
    got: list[tuple[int, list[str]]] = []
    while not got or got[-1][0] < len(records) - 1:
        assert events.poll(15_000), f"the shard stopped at {got}"
        message = aggregator_input_decoder.decode(events.recv())
        assert isinstance(message, EventBatch)
        got.append((message.upto, [event_decoder.decode(raw).ticker for raw in message.events]))
    return got


def first_and_last_highs() -> list[Record]:
    """One batch: a new high at its second record (ticker F) and at its last (ticker L), nothing between."""
    now = time.time_ns()
    quiet = [Trade(t, 50.0, 1, now) for t in symbol_names(40, [], "Q")]  # each ticker's first trade: no event
    rising = {t: [Trade(t, p, 1, now), Trade(t, p * 1.01, 1, now + S)] for t, p in (("F", 10.0), ("L", 20.0))}
    return [*rising["F"], *quiet, *rising["L"]]


def test_a_tick_batchs_first_event_goes_to_the_aggregator_before_the_rest_of_the_batch_is_read(mesh_factory) -> None:
    """Tick sends at once (batch_size 1): an event found at a batch's second record does not wait for the 42
    records after it. It goes alone, covering the stream only up to before the batch; the last goes after."""
    records = first_and_last_highs()
    assert event_messages(mesh_factory(), records) == [(-1, ["F"]), (len(records) - 1, ["L"])]


def test_a_batched_channels_events_go_together_at_the_end_of_the_batch(mesh_factory) -> None:
    """With batch_size above 1 waiting is asked for: one message for the batch, both events in it."""
    records = first_and_last_highs()
    mesh = mesh_factory({"channels": {"tick": {"batch_size": 50, "timeout_ms": 5.0}}})
    assert event_messages(mesh, records) == [(len(records) - 1, ["F", "L"])]


def test_a_batched_channels_events_from_batches_in_quick_succession_share_a_message(mesh_factory) -> None:
    """A batched channel's events wait up to EVENTS_NS (or its timeout_ms) after the shard's last report, so
    under load one message carries several batches' events. 20 batches 2 ms apart, an event in each: sent a
    message a batch before; now at most one per 10 ms, every event once and in order."""
    data, events = around_tick_shard(mesh_factory({"channels": {"tick": {"batch_size": 50, "timeout_ms": 100.0}}}))
    now = time.time_ns()
    for k in range(20):
        records: list[Record] = [Trade(f"E{k}", 10.0, 1, now), Trade(f"E{k}", 10.1, 1, now + S)]  # a high
        data.send(encoder.encode(Batch("tick", 0, 7, k * 2, 0, [now] * 2, records)))
        time.sleep(0.002)
    messages: list[tuple[int, list[str]]] = []
    while not messages or messages[-1][0] < 39:
        assert events.poll(15_000), f"the shard stopped at {messages}"
        message = aggregator_input_decoder.decode(events.recv())
        assert isinstance(message, EventBatch)
        messages.append((message.upto, [event_decoder.decode(raw).ticker for raw in message.events]))
    assert [t for _, tickers in messages for t in tickers] == [f"E{k}" for k in range(20)]
    assert len(messages) <= 10, messages


def test_a_small_router_window_gets_a_shards_progress_a_quarter_at_a_time_without_waiting_100_ms(mesh_factory) -> None:
    """Progress without events goes at most every 100 ms, but the router holds each record until it hears of it:
    with `router.window` 40 a shard reports as soon as 10 records (a quarter) are unreported. 40 batches of 5
    records without events, 2 ms apart: about 20 reports, where the 100 ms rule alone would send one per 50."""
    data, events = around_tick_shard(mesh_factory({"router": {"window": 40}}))
    now = time.time_ns()
    start = time.monotonic()
    for k in range(40):
        records: list[Record] = [Trade(f"P{k}.{i}", 50.0, 1, now) for i in range(5)]  # a first trade each: no event
        data.send(encoder.encode(Batch("tick", 0, 7, k * 5, 0, [now] * 5, records)))
        time.sleep(0.002)
    reports: list[int] = []
    while not reports or reports[-1] < 199:
        assert events.poll(15_000), f"the shard stopped at {reports}"
        message = aggregator_input_decoder.decode(events.recv())
        assert isinstance(message, EventBatch) and not message.events
        reports.append(message.upto)
    elapsed = time.monotonic() - start
    assert reports == sorted(reports)
    assert len(reports) > elapsed / (PROGRESS_NS / 1e9) + 2, f"{len(reports)} in {elapsed:.3f} s"
