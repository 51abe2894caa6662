"""The mesh end to end: scripted records in, exactly the expected events out, counters that add up."""

from __future__ import annotations

import signal
import time

import msgspec

from tests.mesh import Mesh, collect, drain, poll_until
from tickmesh.schema import Bar, BigMove, FairMarketValue, FmvDeviation, High, Trade, encoder
from tickmesh.sharding import shard_of

S = 1_000_000_000


def scripted(now: int) -> list:
    """Trades making new highs, a bar closing at its high up 2.5 %, an FMV 1.5 % above the last trade."""
    return [
        Trade("AAPL", 100.0, 100, now),
        Trade("AAPL", 100.5, 200, now + 2 * S),
        Trade("AAPL", 101.0, 300, now + 4 * S),
        Bar("MSFT", open=100.0, high=102.5, low=99.8, close=102.5, volume=5_000, start=now - 60 * S, end=now),
        Trade("NVDA", 200.0, 50, now),
        FairMarketValue("NVDA", 203.0, now + S),
    ]


def kinds(received):
    return sorted((p.event.__struct_config__.tag, p.event.source, p.event.ticker) for p in received)


def test_scripted_records_yield_exactly_the_expected_events(mesh: Mesh) -> None:
    sub = mesh.subscriber()
    now = time.time_ns()
    mesh.push(scripted(now))
    received = collect(sub, lambda r: len(r) >= 5)
    received += drain(sub)
    assert kinds(received) == [
        ("big_move", "ohlcv", "MSFT"),
        ("fmv_deviation", "fmv", "NVDA"),
        ("high", "ohlcv", "MSFT"),
        ("high", "tick", "AAPL"),
        ("high", "tick", "AAPL"),
    ]
    by_id = {p.event.id: p.event for p in received}
    highs = sorted((e for e in by_id.values() if isinstance(e, High) and e.source == "tick"), key=lambda e: e.time)
    assert [(h.price, h.previous, h.count, h.time) for h in highs] == [
        (100.5, 100.0, 1, now + 2 * S),
        (101.0, 100.5, 2, now + 4 * S),
    ]
    assert all(h.priority == 1 and h.ingest_ns <= h.detected_ns for h in highs)
    big = next(e for e in by_id.values() if isinstance(e, BigMove))
    assert (big.direction, round(big.pct, 6), big.time, big.priority) == ("up", 2.5, now, 2)
    bar_high = next(e for e in by_id.values() if isinstance(e, High) and e.source == "ohlcv")
    assert round(bar_high.pct or 0, 6) == 2.5 and bar_high.price == 102.5
    fmv = next(e for e in by_id.values() if isinstance(e, FmvDeviation))
    assert (fmv.direction, fmv.market_price, fmv.fmv, round(fmv.deviation, 6), fmv.priority) == (
        "overvalued",
        200.0,
        203.0,
        1.5,
        3,
    )
    seqs = [p.seq for p in received]
    assert sorted(seqs) == list(range(seqs[0], seqs[0] + 5)) and sub.gaps == 0

    counters = poll_until(lambda: _settled(mesh, published=5), what="counters to settle")
    for channel, n in (("tick", 4), ("ohlcv", 1), ("fmv", 1)):
        assert counters[f"{channel}.received"] == n
        assert counters[f"{channel}.routed"] == n
        assert counters[f"{channel}.processed"] == n
    assert counters["tick.events.high"] == 2
    assert counters["ohlcv.events.big_move"] == 1 and counters["ohlcv.events.high"] == 1
    assert counters["fmv.events.fmv_deviation"] == 1
    assert counters["received"] == 5 and counters["published"] == 5
    assert not any(k.startswith("deduplicated") or ".rejected" in k for k in counters)


def _settled(mesh: Mesh, published: int) -> dict[str, int] | None:
    counters = mesh.counters()
    return counters if counters.get("published") == published else None


def test_two_shards_keep_each_ticker_on_one_shard(mesh_factory) -> None:
    shards = {"tick": {"shards": 2}, "ohlcv": {"shards": 2}, "fmv": {"shards": 2}}
    mesh = mesh_factory({"channels": shards}).start()
    sub = mesh.subscriber()
    now = time.time_ns()
    tickers = [f"T{i:02d}" for i in range(24)]
    assert {shard_of(t, 2) for t in tickers} == {0, 1}
    records: list = []
    for step in range(3):  # first trade sets the level, then two new highs each
        records += [Trade(t, 10.0 + step, 100, now + step * 2 * S) for t in tickers]
    records += [  # other tickers: a bar's close-at-high would be a cross-source duplicate of a tick high
        Bar("B" + t, open=10.0, high=10.3, low=10.0, close=10.3, volume=100, start=now - 60 * S, end=now)
        for t in tickers
    ]
    mesh.push(records)
    received = collect(sub, lambda r: len(r) >= len(tickers) * 4)  # 2 highs + big_move + close-at-high
    received += drain(sub)
    assert len(received) == len(tickers) * 4
    counters = poll_until(lambda: _settled(mesh, published=len(received)), what="counters")
    assert counters["tick.events.high"] == 2 * len(tickers)
    for shard in (0, 1):
        mine = [t for t in tickers if shard_of(t, 2) == shard]
        bars = [t for t in tickers if shard_of("B" + t, 2) == shard]
        tick = mesh.statuses[f"worker.tick.{shard}"].counters
        ohlcv = mesh.statuses[f"worker.ohlcv.{shard}"].counters
        assert tick["tick.processed"] == 3 * len(mine) and tick["tick.events.high"] == 2 * len(mine)
        assert ohlcv["ohlcv.processed"] == len(bars) and ohlcv["ohlcv.events.big_move"] == len(bars)


def test_bad_input_is_rejected_by_reason_and_valid_neighbours_flow(mesh: Mesh) -> None:
    sub = mesh.subscriber()
    now = time.time_ns()
    push = mesh.producer()
    good = [Trade("GOOD", 50.0 + i, 10, now + i * 2 * S) for i in range(4)]  # three new highs
    raw = msgspec.msgpack.encode
    bad_frames = [
        b"\xc1garbage\xff",  # not msgpack
        encoder.encode([good[0]])[:-3],  # truncated
        raw([["Z", "AAPL", 1.0]]),  # unknown tag
        raw([["T", "AAPL", "cheap", 10, now]]),  # wrong field type
        raw([["T", "AAPL", float("nan"), 10, now]]),
        raw([["T", "AAPL", float("inf"), 10, now]]),
        raw([["T", "AAPL", 10.0, -5, now]]),  # negative size
        raw([["T", "", 10.0, 5, now]]),  # empty ticker
        raw([["T", "A" * 200, 10.0, 5, now]]),  # absurd ticker
        raw([["T", "AAPL", 10.0, 5, now // 1_000_000]]),  # a timestamp in ms, not ns
        raw([["B", "AAPL", 10.0, 9.0, 11.0, 10.0, 5, now - 60 * S, now]]),  # high below low
        b"\x91" + b"\x91" * 100_000,  # absurdly deep nesting
        b"x" * (2 << 20),  # oversize
    ]
    push.send([good[0]])
    for frame in bad_frames:
        push.send_raw(frame)
    push.send([good[1]])
    # a frame with a bad record between two good ones: the good ones still flow
    mixed = b"\x93" + encoder.encode(good[2]) + raw(["T", "GOOD", -1.0, 1, now]) + encoder.encode(good[3])
    push.send_raw(mixed)
    push.flush()
    received = collect(sub, lambda r: len(r) >= 4)
    received += drain(sub)
    # three new highs, and 50 → 53 within 6 s is a surge (6 % against the 3 % band minimum)
    assert sorted((p.event.__struct_config__.tag, p.event.price) for p in received) == [
        ("high", 51.0),
        ("high", 52.0),
        ("high", 53.0),
        ("surge", 53.0),
    ]
    counters = poll_until(lambda: _settled(mesh, published=4), what="counters")
    rejected = {k: v for k, v in counters.items() if ".rejected." in k}
    assert rejected == {
        "ingest.rejected.malformed": 1,
        "ingest.rejected.truncated": 1,
        "ingest.rejected.unknown_type": 1,
        "tick.rejected.bad_price": 4,  # wrong type, NaN, inf, and the negative one in the mixed frame
        "tick.rejected.bad_size": 1,
        "tick.rejected.bad_ticker": 2,
        "tick.rejected.bad_timestamp": 1,
        "ohlcv.rejected.invalid_bar": 1,
        "ingest.rejected.too_deep": 1,
        "ingest.rejected.oversize": 1,
    }
    assert counters["tick.received"] == 4 and counters["tick.processed"] == 4
    assert mesh.procs["router"].poll() is None


def test_sigterm_stops_every_process_cleanly_within_five_seconds(mesh: Mesh) -> None:
    mesh.push([Trade("AAPL", 100.0, 1, time.time_ns())])
    started = time.monotonic()
    for proc in mesh.procs.values():
        proc.send_signal(signal.SIGTERM)
    for name, proc in mesh.procs.items():
        assert proc.wait(6) == 0, mesh.log(name)
        assert "Traceback" not in mesh.log(name), mesh.log(name)
    assert time.monotonic() - started < 5.5


def test_ingest_accepts_a_single_unwrapped_record(mesh: Mesh) -> None:
    push = mesh.producer()
    push.send_raw(encoder.encode(Trade("ONE", 1.0, 1, time.time_ns())))
    push.flush()
    counters = poll_until(lambda: (c := mesh.counters()).get("tick.processed") == 1 and c, what="processed")
    assert counters["tick.received"] == 1
