"""TICK rules, hand-worked: price-band gate, high/low cooldown, sessions, trend, surge, snapshots."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tickmesh.config import TickChannel, TickRules
from tickmesh.schema import Bar, Event, FairMarketValue, High, Low, Surge, Trade, Trend
from workers.tick_rules import Bands, TickDetector, passes

DAY = 1_700_006_400  # 2023-11-15 00:00:00 UTC, a session start
S = 1_000_000_000


def trade(price: float, s: float, size: float = 100.0, ticker: str = "AAA", seq: int | None = None) -> Trade:
    return Trade(ticker, price, size, DAY * S + round(s * S), sequence=seq)


def detector(**rules: Any) -> TickDetector:
    return TickDetector(TickChannel(rules=TickRules(**rules)))


def run(det: TickDetector, trades: list[Trade]) -> list[Event]:
    out: list[Event] = []
    for i, tr in enumerate(trades):
        out.extend(det.process(tr, i, i + 1, i + 2))
    return out


def kinds(events: list[Event]) -> list[str]:
    return [str(e.__struct_config__.tag) for e in events]


HIGH_LOW_ONLY = {"trend_enabled": False, "surge_enabled": False}


# -- price bands and the gate ------------------------------------------------------------
@pytest.mark.parametrize(
    ("price", "band"),
    [
        (0.01, 0),
        (0.999, 0),
        (1.0, 1),
        (4.99, 1),
        (5.0, 2),
        (24.99, 2),
        (25.0, 3),
        (99.99, 3),
        (100.0, 4),
        (499.99, 4),
        (500.0, 5),
        (10_000.0, 5),
    ],
)
def test_band_of_a_price(price: float, band: int) -> None:
    assert Bands(TickRules()).band(price) == band


def test_gate_is_either_minimum() -> None:
    assert passes(0.02, 24.0, 0.10, 0.02)  # the dollar minimum, exactly
    assert not passes(0.0199, 24.0, 0.10, 0.02)  # 0.083 %: neither
    assert passes(0.01, 10.0, 0.10, 0.02)  # the percent minimum, exactly
    assert not passes(0.0, 10.0, 0.0, 0.0)  # no move is never a move


# (reference, new price, fires): per band, where the percent minimum governs and where the dollar one does
HIGH_CASES = [
    (0.50, 0.501, True),
    (0.50, 0.5009, False),
    (0.50, 0.5011, True),  # band 1: 0.20 % of 0.50 = 0.001
    (0.9985, 0.9999, False),
    (0.9985, 1.0, True),  # at 1.00 the band-2 gate (0.15 %) applies
    (4.00, 4.006, True),
    (4.00, 4.0059, False),
    (4.00, 4.0061, True),  # band 2: 0.15 % of 4 = 0.006
    (4.98, 4.9875, True),
    (4.98, 4.9874, False),  # 0.15 % of 4.98 = 0.00747 (band 2)
    (4.994, 4.9999, False),
    (4.994, 5.0, True),  # 0.12 %: short of band 2's 0.15 %, past band 3's 0.10 %
    (10.00, 10.01, True),
    (10.00, 10.0099, False),
    (10.00, 10.0101, True),  # band 3: 0.10 %
    (24.00, 24.02, True),
    (24.00, 24.0199, False),
    (24.00, 24.0201, True),  # band 3: $0.02 under 0.10 %
    (24.98, 25.0, True),
    (24.985, 25.0, False),  # band 4 from 25: 0.08 % = 0.01999 > 0.015 move
    (50.00, 50.04, True),
    (50.00, 50.0399, False),
    (50.00, 50.0401, True),  # band 4: 0.08 %
    (90.00, 90.05, True),
    (90.00, 90.0499, False),
    (90.00, 90.0501, True),  # band 4: $0.05
    (99.95, 100.0, True),
    (99.96, 100.0, False),  # band 5 from 100: 0.05 % of 99.96 = 0.04998 > 0.04
    (150.00, 150.075, True),
    (150.00, 150.0749, False),  # band 5: 0.05 %
    (400.00, 400.10, True),
    (400.00, 400.0999, False),
    (400.00, 400.1001, True),  # band 5: $0.10
    (499.90, 500.0, True),
    (499.91, 500.0, False),  # band 6 from 500: $0.10
    (1000.00, 1000.10, True),
    (1000.00, 1000.0999, False),  # band 6: $0.10 under 0.05 % = $0.50
]


@pytest.mark.parametrize(("ref", "new", "fires"), HIGH_CASES)
def test_high_gate_at_every_band(ref: float, new: float, fires: bool) -> None:
    events = run(detector(**HIGH_LOW_ONLY), [trade(ref, 0), trade(new, 2)])
    assert kinds(events) == (["high"] if fires else [])
    if fires:
        high = events[0]
        assert isinstance(high, High)
        assert (high.previous, high.count, high.price, high.source, high.priority) == (ref, 1, new, "tick", 1)


LOW_CASES = [
    (0.50, 0.499, True),
    (0.50, 0.4991, False),
    (0.50, 0.4989, True),  # band 1: 0.20 % of the reference
    (1.0018, 1.0, True),
    (1.0018, 0.9999, False),  # 0.18 %: enough in band 2 (at 1.00), not in band 1
    (4.00, 3.994, True),
    (4.00, 3.9941, False),
    (4.00, 3.9939, True),  # band 2: 0.15 %
    (10.00, 9.99, True),
    (10.00, 9.9901, False),
    (10.00, 9.9899, True),  # band 3: 0.10 %
    (24.00, 23.98, True),
    (24.00, 23.9801, False),
    (24.00, 23.9799, True),  # band 3: $0.02
    (25.02, 25.0, False),
    (25.02, 24.99, True),  # band 4 at 25.00 wants 0.08 % (> $0.02); band 3 $0.02
    (50.00, 49.96, True),
    (50.00, 49.9601, False),  # band 4: 0.08 %
    (90.00, 89.95, True),
    (90.00, 89.9501, False),  # band 4: $0.05
    (100.04, 100.0, False),
    (100.04, 99.99, True),  # band 5 at 100.00; band 4's $0.05 below it
    (150.00, 149.925, True),
    (150.00, 149.9251, False),  # band 5: 0.05 %
    (400.00, 399.90, True),
    (400.00, 399.9001, False),  # band 5: $0.10
    (500.09, 500.0, False),
    (500.09, 499.99, True),  # band 6 at 500.00: $0.10
    (1000.00, 999.90, True),
    (1000.00, 999.9001, False),  # band 6: $0.10
]


@pytest.mark.parametrize(("ref", "new", "fires"), LOW_CASES)
def test_low_gate_at_every_band(ref: float, new: float, fires: bool) -> None:
    events = run(detector(**HIGH_LOW_ONLY), [trade(ref, 0), trade(new, 2)])
    assert kinds(events) == (["low"] if fires else [])
    if fires:
        assert isinstance(events[0], Low) and (events[0].previous, events[0].count) == (ref, 1)


def test_first_trade_sets_both_levels_silently() -> None:
    det = detector(**HIGH_LOW_ONLY)
    assert run(det, [trade(10.0, 0)]) == []
    events = run(det, [trade(10.05, 1), trade(9.95, 2)])
    assert kinds(events) == ["high", "low"]
    assert [e.previous for e in events] == [10.0, 10.0]  # type: ignore[union-attr]


def test_gate_is_measured_from_the_last_reported_high() -> None:
    det = detector(**HIGH_LOW_ONLY)
    events = run(det, [trade(10.00, 0), trade(10.005, 2), trade(10.009, 4), trade(10.01, 6), trade(10.019, 8)])
    # 10.005 and 10.009 raise the session high silently; 10.01 is 0.10 % above the session's first price
    assert [(e.price, e.previous, e.count) for e in events] == [(10.01, 10.0, 1)]  # type: ignore[union-attr]
    events = run(det, [trade(10.02, 10)])  # 0.0999 % above 10.01: not yet
    assert events == []
    events = run(det, [trade(10.0201, 12)])
    assert [(e.price, e.previous, e.count) for e in events] == [(10.0201, 10.01, 2)]  # type: ignore[union-attr]


def test_cooldown_edges() -> None:
    det = detector(**HIGH_LOW_ONLY)  # cooldown_s = 1.0 of event time
    events = run(det, [trade(10.0, 0), trade(10.1, 1.0), trade(10.2, 1.999999999), trade(10.3, 2.0)])
    assert [(e.price, e.previous, e.count) for e in events] == [(10.1, 10.0, 1), (10.3, 10.1, 2)]  # type: ignore[union-attr]
    events = run(det, [trade(9.0, 2.5), trade(8.0, 3.0)])  # lows have their own cooldown
    assert [(e.price, e.previous) for e in kinds_of(events, "low")] == [(9.0, 10.0)]  # type: ignore[union-attr]
    events = run(det, [trade(7.9, 3.5)])  # 1.0 s after the low at 2.5 and below the reported 9.0
    assert [(e.price, e.previous, e.count) for e in events] == [(7.9, 9.0, 2)]  # type: ignore[union-attr]


def kinds_of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.__struct_config__.tag == kind]


def test_event_envelope_and_deterministic_ids() -> None:
    det = detector(**HIGH_LOW_ONLY)
    run(det, [trade(10.0, 0)])
    (event,) = det.process(trade(10.5, 1), 41, 42, 43)
    assert event.id == f"tick:high:AAA:{(DAY + 1) * S}"
    assert (event.time, event.price, event.record_seq, event.ingest_ns, event.detected_ns) == (
        (DAY + 1) * S,
        10.5,
        41,
        42,
        43,
    )
    again = detector(**HIGH_LOW_ONLY)
    run(again, [trade(10.0, 0)])
    assert again.process(trade(10.5, 1, seq=7), 0, 0, 0)[0].id == f"tick:high:AAA:{(DAY + 1) * S}.7"


def test_other_records_and_switched_off_rules_give_nothing() -> None:
    det = detector()
    bar = Bar("AAA", 1.0, 2.0, 1.0, 2.0, 10.0, DAY * S, DAY * S + S)
    assert det.process(bar, 0, 0, 0) == [] and det.process(FairMarketValue("AAA", 2.0, DAY * S), 0, 0, 0) == []
    off = detector(enabled=False)
    assert run(off, [trade(10.0, 0), trade(11.0, 2)]) == [] and off.states == {}
    quiet = detector(high_low_enabled=False, **HIGH_LOW_ONLY)
    assert run(quiet, [trade(10.0, 0), trade(11.0, 2)]) == []


# -- sessions ----------------------------------------------------------------------------------
def test_new_utc_day_starts_a_new_session() -> None:
    det = detector(**HIGH_LOW_ONLY)
    run(det, [trade(10.0, 0), trade(12.0, 3600)])
    events = run(det, [trade(11.0, 86_400), trade(11.02, 86_401)])  # 11.0 would be a low: a new session
    assert [(e.__struct_config__.tag, e.previous, e.count) for e in events] == [("high", 11.0, 1)]  # type: ignore[union-attr]
    events = run(det, [trade(5.0, 86_399)])  # yesterday's late trade: ignored, counted
    assert events == [] and det.ignored["previous_session"] == 1


def test_session_start_is_configurable() -> None:
    det = detector(session_start_s=14 * 3600 + 1800, **HIGH_LOW_ONLY)  # 14:30 UTC
    run(det, [trade(10.0, 14 * 3600 + 1799)])
    assert run(det, [trade(11.0, 14 * 3600 + 1800)]) == []  # the first trade of the 14:30 session
    assert kinds(run(det, [trade(12.0, 14 * 3600 + 1801)])) == ["high"]


def test_late_trade_within_the_session_never_moves_windows_back() -> None:
    det = detector(**HIGH_LOW_ONLY)
    run(det, [trade(10.0, 0), trade(10.5, 10)])
    events = run(det, [trade(10.8, 5)])  # late; the cooldown counts from the newest time (10 s)
    assert kinds(events) == [] and det.states["AAA"][5] == 10 * S  # LAST
    assert kinds(run(det, [trade(10.9, 11)])) == ["high"]


# -- trend --------------------------------------------------------------------------------------
TREND_ONLY = {"surge_enabled": False, "high_low_enabled": False}


def flat(until_s: float, every_s: float = 10.0, price: float = 100.0) -> list[Trade]:
    n = int(until_s // every_s)
    return [trade(price, k * every_s) for k in range(n)]


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (100.3, ("up", 0.3, "moderate")),
        (100.2999, None),
        (100.6, ("up", 0.6, "strong")),
        (100.5999, ("up", 0.5999, "moderate")),
        (99.7, ("down", -0.3, "moderate")),
        (99.7001, None),
        (99.4, ("down", -0.6, "strong")),
    ],
)
def test_trend_threshold_and_strength(price: float, expected: tuple[str, float, str] | None) -> None:
    # flat at 100 for 600 s: every window's oldest price is 100, so the score is the % move itself
    events = run(detector(**TREND_ONLY), [*flat(600), trade(price, 600)])
    if expected is None:
        assert events == []
        return
    (event,) = events
    assert isinstance(event, Trend)
    assert (event.direction, round(event.score or 0, 9), event.strength) == expected


def test_trend_weights_windows_separately() -> None:
    # 100 until 400 s, then 101: every window starts at 100 (score 1.0) until the 180 s window's
    # oldest bucket is the one at 400 s; at 580 s: 0.3 * 0 % + 0.4 * 1 % + 0.3 * 1 % = 0.7
    trades = [trade(100.0 if k * 10 < 400 else 101.0, k * 10) for k in range(60)]
    events = run(detector(**TREND_ONLY, trend_threshold=0.65), trades)
    got = [((e.time - DAY * S) // S, round(e.score, 9), e.strength) for e in events]  # type: ignore[union-attr,arg-type]
    assert got == [(400, 1.0, "strong"), (460, 1.0, "strong"), (520, 1.0, "strong"), (580, 0.7, "strong")]


def test_trend_at_the_threshold_between_buckets() -> None:
    # 100.3 at 601 s shares the 600 s bucket, below the session high: only the cached price
    # filter can send it to the exact check, so the filter must not be tighter than the rule
    trades = [trade(100.0, 0), trade(102.0, 0.5), *flat(600)[1:], trade(100.0, 600), trade(100.3, 601)]
    events = run(detector(**TREND_ONLY), trades)
    assert [(e.time, round(e.score or 0.0, 9)) for e in events if isinstance(e, Trend)] == [((DAY + 601) * S, 0.3)]


def test_trend_needs_history_and_trades() -> None:
    every_s = [trade(100.0, k) for k in range(180)]  # one trade a second from 0 to 179 s
    det = detector(**TREND_ONLY)
    assert run(det, [*every_s, trade(101.0, 179.999)]) == []  # 179.999 s of history
    assert kinds(run(det, [trade(101.0, 180)])) == ["trend"]
    sparse = [trade(100.0, k * 20) for k in range(30) if k * 20 != 420]  # 9 trades in [420, 600)
    assert run(detector(**TREND_ONLY), [*sparse, trade(101.0, 600)]) == []
    enough = [trade(100.0, k * 20) for k in range(30)]  # 10 trades in the 180 s window, with this one
    assert kinds(run(detector(**TREND_ONLY), [*enough, trade(101.0, 600)])) == ["trend"]


def test_trend_interval_and_direction_flips() -> None:
    det = detector(**TREND_ONLY)
    assert kinds(run(det, [*flat(600), trade(100.5, 600)])) == ["trend"]
    assert run(det, [trade(100.5, 610)]) == []  # once per 60 s
    down = run(det, [trade(99.5, 620)])  # a flip fires at once
    assert [e.direction for e in down] == ["down"]  # type: ignore[union-attr]
    up = run(det, [trade(100.5, 630)])  # and flips back
    assert [e.direction for e in up] == ["up"]  # type: ignore[union-attr]
    assert run(det, [trade(100.5, 689.999)]) == [] and kinds(run(det, [trade(100.5, 690)])) == ["trend"]


# -- surge ---------------------------------------------------------------------------------------
SURGE_ONLY = {"trend_enabled": False, "high_low_enabled": False}


@pytest.mark.parametrize(
    ("price", "fires"), [(101.5, True), (101.49, False), (101.51, True), (99.25, True), (99.26, False)]
)
def test_surge_at_the_band_minimum(price: float, fires: bool) -> None:
    # up from 100 is band 5 (2.5 % or $1.50: $1.50 governs); below 100, band 4's $0.75 does
    trades = [trade(100.0, k) for k in range(5)]
    events = run(detector(**SURGE_ONLY), [*trades, trade(price, 5)])
    assert kinds(events) == (["surge"] if fires else [])
    if fires:
        surge = events[0]
        assert isinstance(surge, Surge)
        assert surge.direction == ("up" if price > 100 else "down")
        assert surge.move_pct == pytest.approx(price - 100.0)
        # 500 shares after the baseline (1..5 s); 600 over two 5 s buckets: average 300 per 5 s
        assert surge.volume_ratio == pytest.approx(500 / 300)


def test_surge_at_the_threshold_within_a_slot() -> None:
    # 101.5 at 5.1 s is in the slot of 5.0 s and below the session high (105): only the cached
    # price filter can send it to the exact check
    trades = [trade(100.0, 0), trade(105.0, 0.1), *(trade(100.0, k) for k in range(1, 6)), trade(101.5, 5.1)]
    assert kinds(run(detector(**SURGE_ONLY), trades)) == ["surge"]


@pytest.mark.parametrize("sign", [1, -1])
def test_surge_filter_covers_a_new_ring_extreme_between_full_checks(sign: int) -> None:
    # 299 at 5.3 s starts a slot on the quick path and becomes the baseline at 10.3 s; 300.6 at
    # 10.6 s is $1.60 above it (a surge: band 5 wants $1.50) though only $0.60 above 300.
    # And the mirror image: 301, then 299.4.
    rules = {**SURGE_ONLY, "trend_bucket_s": 60}
    prices = [(300.0, 0), (300 - 10 * sign, 0.1), (300 + 10 * sign, 0.2), (300.0, 5.0), (300 - sign, 5.3)]
    prices += [(300.0, 10.5), (300 + 0.6 * sign, 10.6)]
    events = run(detector(**rules), [trade(p, s) for p, s in prices])
    got = [(e.time, e.direction, round(e.move_pct, 9)) for e in events]  # type: ignore[union-attr]
    assert got == [(DAY * S + 10_600_000_000, "up" if sign > 0 else "down", round(sign * 1.6 / (300 - sign) * 100, 9))]


def test_surge_baseline_is_the_newest_trade_at_least_the_lookback_older() -> None:
    base = [trade(100.0, 0), trade(101.0, 0.5)]
    assert kinds(run(detector(**SURGE_ONLY), [*base, trade(101.5, 5.4)])) == ["surge"]  # from 100 (0 s)
    assert run(detector(**SURGE_ONLY), [*base, trade(102.4, 5.5)]) == []  # from 101 (0.5 s): $1.40
    assert run(detector(**SURGE_ONLY), [*base, trade(105.0, 4.999)]) == []  # no trade 5 s older yet


def test_surge_baseline_resolution_is_a_slot() -> None:
    # documented effect: the buffer keeps the first trade of each 250 ms slot, so 99.0 at 0.1 s
    # (same slot as 100.0 at 0 s) is not a baseline; with 99.0 at 0.25 s (its own slot) it is
    same_slot = [trade(100.0, 0), trade(99.0, 0.1), trade(100.5, 5.1)]
    assert run(detector(**SURGE_ONLY), same_slot) == []
    own_slot = [trade(100.0, 0), trade(99.0, 0.25), trade(100.5, 5.3)]
    assert kinds(run(detector(**SURGE_ONLY), own_slot)) == ["surge"]


def test_surge_uses_the_band_of_the_current_price() -> None:
    trades = [trade(99.0, 0)]  # band 4: 3 % or $0.75
    assert kinds(run(detector(**SURGE_ONLY), [*trades, trade(99.75, 5)])) == ["surge"]
    assert run(detector(**SURGE_ONLY), [*trades, trade(100.0, 5)]) == []  # band 5: $1.00 < $1.50


def test_surge_cooldown_edges() -> None:
    det = detector(**SURGE_ONLY)
    assert kinds(run(det, [trade(100.0, 0), trade(102.0, 5)])) == ["surge"]
    trades = [trade(100.0 + ((k + 1) % 2) * 3, 5 + k) for k in range(1, 60)]  # $3 swings every second
    assert run(det, [*trades, trade(100.0, 64.999)]) == []  # within 60 s of the surge at 5 s
    assert kinds(run(det, [trade(103.0, 65)])) == ["surge"]  # from 100 at 60 s


# -- live configuration and snapshots -----------------------------------------------------------
def test_configure_keeps_state_and_applies_new_thresholds() -> None:
    det = detector(**HIGH_LOW_ONLY)
    run(det, [trade(10.0, 0)])
    det.configure(
        TickChannel(priority=4, rules=TickRules(band3_high_low_pct=1.0, band3_high_low_usd=1.0, **HIGH_LOW_ONLY))
    )
    assert run(det, [trade(10.05, 2)]) == []  # now needs 1 %
    (event,) = run(det, [trade(10.1, 4)])
    assert event.priority == 4 and event.previous == 10.0  # type: ignore[union-attr]


def test_changing_a_window_layout_restarts_windows_only() -> None:
    det = detector()
    run(det, [*flat(300), trade(101.0, 300)])
    det.configure(TickChannel(rules=TickRules(trend_bucket_s=10)))
    assert det.states["AAA"].tr.tolist() == [] and det.states["AAA"][7] == 101.0  # HI survives


def test_snapshot_round_trip_mid_stream() -> None:
    trades = [
        trade(100.0 + ((k * 37) % 11 - 5) * 0.3 + (k // 50), k * 1.7, size=100.0 * (k % 5 + 1)) for k in range(800)
    ]
    trades += [trade(50.0 + k % 3, k * 2.3, ticker="BBB") for k in range(300)]
    trades.sort(key=lambda t: t.timestamp)
    whole = run(detector(), trades)
    first = detector()
    head = run(first, trades[:500])
    blob = first.snapshot()
    second = detector()
    second.restore(blob)
    tail = [e for i, tr in enumerate(trades[500:], 500) for e in second.process(tr, i, i + 1, i + 2)]
    assert head + tail == whole and len(whole) > 10
    kept = dict(second.states)
    for bad in (msgspec.msgpack.encode({"v": 99}), b"\xc1", blob[:-5], blob.replace(b"AAA", b"AAB")[:0]):
        with pytest.raises(ValueError, match="snapshot"):
            second.restore(bad)
    assert second.states == kept  # a bad snapshot changes nothing


def test_a_replayed_source_sequence_is_skipped_and_counted() -> None:
    trades = [trade(100.0 + (k % 7) - 3 + k / 20, k * 2.0, seq=1_000 + k) for k in range(300)]
    det = detector()
    first = run(det, trades)
    assert len(first) > 5
    assert run(det, trades) == []  # the same file again: nothing new
    assert det.ignored["duplicate_sequence"] == 300
    unsequenced = [trade(t.price, (t.timestamp - DAY * S) / S) for t in trades[-5:]]
    run(det, unsequenced)  # without a source sequence the late-trade rule applies, not this one
    assert det.ignored["duplicate_sequence"] == 300
    next_day = [trade(100.0, 86_400.0 + k, seq=1 + k) for k in range(3)]  # a new session starts its sequence over
    run(det, next_day)
    assert det.ignored["duplicate_sequence"] == 300 and det.states["AAA"].day == (DAY + 86_400) * S
