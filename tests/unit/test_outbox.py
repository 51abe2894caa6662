"""The router's per-stream outbox: batching, sequence numbers, the in-flight window, overflow."""

from __future__ import annotations

from router.outbox import Outbox
from tickmesh.config import OhlcvChannel, TickChannel
from tickmesh.schema import Checkpointed, Delivered, Gap, Trade, worker_input_decoder

NOW = 1_732_431_234_567_000_000
MS = 1_000_000


def trades(n: int, ticker: str = "A") -> list[Trade]:
    return [Trade(ticker, 1.0 + i, 1, NOW + i) for i in range(n)]


def test_batch_size_one_sends_at_once_and_coalesces_what_waits() -> None:
    box = Outbox("tick", 0, 7, TickChannel(), window=1_000, now_ns=0)
    for i, t in enumerate(trades(3)):
        box.add(t, NOW + i, 0)
    assert box.ready(0)
    batch = worker_input_decoder.decode(box.take(0))
    assert (batch.seq, len(batch.records), batch.epoch, batch.ingest_ns) == (0, 3, 7, [NOW, NOW + 1, NOW + 2])
    assert not box.ready(0) and box.stream.in_flight == 3


def test_a_batched_channel_flushes_at_size_or_timeout() -> None:
    box = Outbox("ohlcv", 0, 1, OhlcvChannel(batch_size=4, timeout_ms=100), window=1_000, now_ns=0)
    for t in trades(3):
        box.add(t, NOW, 0)
    assert not box.ready(99 * MS) and box.deadline_ns() == 100 * MS
    assert box.ready(100 * MS)
    box.add(trades(1)[0], NOW, 0)
    assert box.ready(0)
    assert len(worker_input_decoder.decode(box.take(0)).records) == 4


def test_sequence_numbers_continue_and_only_delivered_and_checkpointed_records_are_released() -> None:
    box = Outbox("tick", 0, 1, TickChannel(batch_size=2), window=1_000, now_ns=0)
    for t in trades(6):
        box.add(t, NOW, 0)
    batches = [worker_input_decoder.decode(box.take(0)) for _ in range(3)]
    assert [b.seq for b in batches] == [0, 2, 4] and box.stream.in_flight == 6
    assert [b.retained_from for b in batches] == [0, 0, 0]
    stream = box.stream
    assert stream.on_ack(Delivered("tick", 0, 1, 5, "aggregator"), 0) == (None, [])
    assert stream.in_flight == 6  # delivered, but the worker's state is not durable yet
    stream.on_ack(Checkpointed("tick", 0, 1, 2, "w1"), 0)  # covers the first batch only, the second is half done
    assert stream.in_flight == 4 and stream.retained_from == 2
    assert len(stream.on_ack(Gap("tick", 0, 1, 2, "w1"), 0)[1]) == 2
    assert len(stream.on_ack(Gap("tick", 0, 1, 3, "w1"), 0)[1]) == 1
    stream.on_ack(Checkpointed("tick", 0, 1, 5, "w1"), 0)
    assert box.stream.in_flight == 0 and not box.stream.unacked and box.stream.retained_from == 6


def test_the_window_holds_records_back() -> None:
    box = Outbox("tick", 0, 1, TickChannel(), window=2, now_ns=0)
    for t in trades(5):
        box.add(t, NOW, 0)
    assert len(worker_input_decoder.decode(box.take(0)).records) == 2
    assert not box.ready(0) and box.deadline_ns() is None
    box.stream.on_ack(Delivered("tick", 0, 1, 1, "aggregator"), 0)
    box.stream.on_ack(Checkpointed("tick", 0, 1, 1, "w1"), 0)
    assert box.ready(0)


def test_conflate_keeps_the_newest_per_ticker_in_order() -> None:
    box = Outbox("ohlcv", 0, 1, OhlcvChannel(buffer=4), window=10, now_ns=0)
    for t in [*trades(3, "A"), *trades(2, "B")]:
        box.add(t, NOW, 0)
    assert box.full and box.conflate() == 3
    assert [(r.ticker, r.price) for r in box.records if isinstance(r, Trade)] == [("A", 3.0), ("B", 2.0)]


def test_paused_channel_sends_nothing() -> None:
    box = Outbox("tick", 0, 1, TickChannel(paused=True), window=10, now_ns=0)
    box.add(trades(1)[0], NOW, 0)
    assert not box.ready(10**12, flush=True)


def test_the_router_flushes_channels_in_their_live_priority_order() -> None:
    from router.app import flush_order
    from tickmesh.config import Config, update_channel

    assert flush_order(Config()) == ["tick", "ohlcv", "fmv"]
    assert flush_order(update_channel(Config(), "tick", {"priority": "3"})) == ["ohlcv", "tick", "fmv"]
