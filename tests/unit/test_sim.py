"""The synthetic market: deterministic, valid, and rich in the patterns the detectors look for."""

from __future__ import annotations

import argparse
from bisect import bisect_left, bisect_right
from collections import defaultdict
from itertools import islice

import msgspec
import pytest

from feeds.app import build_parser
from feeds.market import OHLCV_NAMES, TICK_NAMES, Market, MarketSpec, symbol_names
from feeds.pump import Pacer
from feeds.sim import build_spec
from tickmesh.schema import Bar, FairMarketValue, Trade, encoder, ingest_decoder

START = 1_767_225_600 * 10**9  # 2026-01-01 00:00 UTC
NS = 10**9


def spec(seed: int = 7, seconds: float = 600, **kw: object) -> MarketSpec:
    tick = symbol_names(10, TICK_NAMES, "T")
    values = dict(
        tick_symbols=tick,
        ohlcv_symbols=symbol_names(40, OHLCV_NAMES, "B"),
        fmv_symbols=tick[:4],
        event_rate=200.0,
        start_ns=START,
        seed=seed,
        duration_s=seconds,
    )
    values.update(kw)
    return MarketSpec(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def records() -> list:
    return [r for batch in Market(spec()) for r in batch]


def test_same_seed_same_market_and_another_seed_another() -> None:
    def first(seed: int) -> bytes:
        return encoder.encode([r for batch in islice(Market(spec(seed)), 50) for r in batch])

    assert first(1) == first(1)
    assert first(1) != first(2)


def test_every_record_passes_the_routers_strict_decoding(records: list) -> None:
    decoded = ingest_decoder.decode(encoder.encode(records))  # raises on any invalid value
    assert decoded == records
    kinds = {type(r) for r in records}
    assert kinds == {Trade, Bar, FairMarketValue}


def test_rate_duration_and_time_order(records: list) -> None:
    trades = [r for r in records if isinstance(r, Trade)]
    history = 10 * 40
    assert len(records) == pytest.approx(200 * 600 + history + 10, rel=0.02)
    assert all(START <= t.timestamp <= START + 600 * NS for t in trades)
    last: dict[str, tuple[int, int]] = {}
    for t in trades:  # per ticker: time and source sequence only go up
        prev = last.get(t.ticker, (0, 0))
        assert t.sequence is not None and t.timestamp >= prev[0] and t.sequence > prev[1]
        last[t.ticker] = (t.timestamp, t.sequence)
    bars = [r for r in records if isinstance(r, Bar)]
    assert all(b.end - b.start == 60 * NS and b.end % (60 * NS) == 0 for b in bars)
    assert sum(b.end <= START for b in bars) == history  # history bars end at or before the start


def test_fmv_symbols_are_traded_before_their_first_update(records: list) -> None:
    traded: set[str] = set()
    for r in records:
        if isinstance(r, Trade):
            traded.add(r.ticker)
        elif isinstance(r, FairMarketValue):
            assert r.ticker in traded


def test_session_highs_and_lows(records: list) -> None:
    reported_high: dict[str, float] = {}
    reported_low: dict[str, float] = {}
    highs = lows = 0
    for t in (r for r in records if isinstance(r, Trade)):  # the rule's gate, at its strictest band (0.1 %)
        if t.price >= reported_high.setdefault(t.ticker, t.price) * 1.001:
            reported_high[t.ticker] = t.price
            highs += 1
        if t.price <= reported_low.setdefault(t.ticker, t.price) * 0.999:
            reported_low[t.ticker] = t.price
            lows += 1
    assert highs >= 30 and lows >= 30


def test_surges_and_trends(records: list) -> None:
    times: dict[str, list[int]] = defaultdict(list)
    prices: dict[str, list[float]] = defaultdict(list)
    surges: set[str] = set()
    trends: set[str] = set()
    for t in (r for r in records if isinstance(r, Trade)):
        ts, ps = times[t.ticker], prices[t.ticker]
        older = bisect_right(ts, t.timestamp - 5 * NS)  # the newest trade at least 5 s older is older - 1
        if older and abs(t.price / ps[older - 1] - 1) >= 0.03:  # the surge band is at most 3 % below $500
            surges.add(t.ticker)
        inside = bisect_left(ts, t.timestamp - 180 * NS)  # the oldest trade within 180 s
        enough = t.timestamp - START >= 180 * NS and len(ts) - inside >= 10
        if enough and abs(t.price / ps[inside] - 1) >= 0.003:
            trends.add(t.ticker)
        ts.append(t.timestamp)
        ps.append(t.price)
    assert len(surges) >= 3
    assert len(trends) >= 5


def test_bars_make_big_moves_extreme_closes_and_volume_surges(records: list) -> None:
    volumes: dict[str, list[float]] = defaultdict(list)
    big = at_high = at_low = surge = 0
    for b in (r for r in records if isinstance(r, Bar)):
        pct = (b.close - b.open) / b.open * 100
        big += abs(pct) > 2
        at_high += b.close == b.high and b.high != b.low and pct >= 1
        at_low += b.close == b.low and b.high != b.low and pct <= -1
        prev = volumes[b.ticker][-10:]
        surge += len(prev) >= 5 and b.volume > 3 * sum(prev) / len(prev)
        volumes[b.ticker].append(b.volume)
    assert big >= 10 and at_high >= 3 and at_low >= 3 and surge >= 10


def test_fmv_deviates_more_than_one_percent_from_the_last_trade(records: list) -> None:
    last: dict[str, float] = {}
    deviations = 0
    for r in records:
        if isinstance(r, Trade):
            last[r.ticker] = r.price
        elif isinstance(r, FairMarketValue) and (r.confidence or 1.0) >= 0.8:
            deviations += abs(r.fmv / last[r.ticker] - 1) > 0.011
    assert deviations >= 10


def test_a_rate_too_low_for_the_bars_is_refused() -> None:
    with pytest.raises(ValueError, match="OHLCV symbols alone"):
        spec(event_rate=0.5)
    with pytest.raises(ValueError, match="fmv symbols must be tick symbols"):
        spec(fmv_symbols=("NOPE",))


def sim_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sim", *argv])


def test_scenarios_set_symbols_rate_and_duration_and_flags_override_them() -> None:
    s, rate, compression = build_spec(sim_args("--scenario", "market_open_surge", "--start", "1767225600"))
    assert (len(s.tick_symbols), len(s.ohlcv_symbols), compression) == (100, 8_000, 1.0)
    assert rate == pytest.approx(50_000 / 60) and s.duration_s == 300
    s, rate, compression = build_spec(sim_args("--scenario", "steady_state", "--compression", "10", "--duration", "6"))
    assert (len(s.tick_symbols), s.event_rate, s.duration_s) == (500, pytest.approx(10_000 / 60), 60)
    s, rate, _ = build_spec(sim_args("--tick-symbols", "AAPL,MSFT", "--fmv-symbols", "MSFT", "--ohlcv-symbols", "3"))
    assert (
        s.tick_symbols == ("AAPL", "MSFT") and s.fmv_symbols == ("MSFT",) and s.ohlcv_symbols == ("SPY", "QQQ", "IWM")
    )
    assert rate == 2_000 and s.duration_s is None


def test_pacer_maps_data_time_to_the_wall_clock() -> None:
    now = [100.0]
    pacer = Pacer(10.0, origin_ns=START, clock=lambda: now[0])
    assert pacer.delay(START - 60 * NS) == 0.0  # history is never waited for
    assert pacer.delay(START + 20 * NS) == pytest.approx(2.0)
    now[0] = 101.5
    assert pacer.delay(START + 20 * NS) == pytest.approx(0.5)
    free = Pacer(2.0, clock=lambda: now[0])
    assert free.delay(START) == 0.0 and free.delay(START + 4 * NS) == pytest.approx(2.0)


def test_generation_is_valid_through_msgspec_convert_too() -> None:
    # msgspec.convert runs the same constraints as decoding: a sample of trades round-trips
    sample = [r for batch in islice(Market(spec(3)), 5) for r in batch if isinstance(r, Trade)][:50]
    assert [msgspec.convert(msgspec.to_builtins(t), Trade) for t in sample] == sample
