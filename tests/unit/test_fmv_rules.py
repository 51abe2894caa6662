"""FMV rule, hand-worked: confidence and market-price gates, deviation edges, cooldown and flips."""

from __future__ import annotations

import pytest

from tickmesh.config import FmvChannel, FmvRules
from tickmesh.schema import Event, FairMarketValue, FmvDeviation, Trade
from workers.fmv_rules import FmvDetector

S = 1_000_000_000
T0 = 1_700_006_400 * S


def update(
    fmv: float, s: float = 0.0, market: float | None = 100.0, confidence: float | None = None, ticker: str = "AAA"
) -> FairMarketValue:
    return FairMarketValue(ticker, fmv, T0 + round(s * S), market_price=market, confidence=confidence)


def detector(**rules: float | bool) -> FmvDetector:
    return FmvDetector(FmvChannel(rules=FmvRules(**rules)))  # type: ignore[arg-type]


def run(det: FmvDetector, updates: list[FairMarketValue]) -> list[Event]:
    return [e for i, u in enumerate(updates) for e in det.process(u, i, i + 1, i + 2)]


@pytest.mark.parametrize(
    ("fmv", "market", "direction"),
    [
        (101.0, 100.0, None),
        (101.01, 100.0, "overvalued"),
        (100.99, 100.0, None),
        (99.0, 100.0, None),
        (98.99, 100.0, "undervalued"),
        (10.1, 10.0, None),
        (10.11, 10.0, "overvalued"),
        (100.0, 100.0, None),
    ],
)
def test_deviation_is_strictly_above_one_percent(fmv: float, market: float, direction: str | None) -> None:
    events = run(detector(), [update(fmv, market=market)])
    if direction is None:
        assert events == []
        return
    (event,) = events
    assert isinstance(event, FmvDeviation)
    assert (event.direction, event.fmv, event.market_price, event.confidence) == (direction, fmv, market, 1.0)
    assert event.deviation == pytest.approx((fmv - market) / market * 100)
    assert (event.price, event.time, event.source, event.priority) == (fmv, T0, "fmv", 3)
    assert event.id == f"fmv:fmv_deviation:AAA:{T0}"
    assert (event.record_seq, event.ingest_ns, event.detected_ns) == (0, 1, 2)


@pytest.mark.parametrize(
    ("confidence", "counted"), [(0.8, False), (0.7999, True), (None, False), (1.0, False), (0.0, True)]
)
def test_confidence_edges(confidence: float | None, counted: bool) -> None:
    det = detector()
    events = run(det, [update(105.0, confidence=confidence)])
    assert (events == []) == counted and det.ignored["low_confidence"] == int(counted)
    if not counted:
        assert events[0].confidence == (1.0 if confidence is None else confidence)  # type: ignore[union-attr]


def test_missing_market_price_is_counted_and_ignored() -> None:
    det = detector()
    assert run(det, [update(150.0, market=None), update(150.0, market=None, confidence=0.1)]) == []
    assert det.ignored == {"low_confidence": 1, "no_market_price": 1}


def test_cooldown_and_flips() -> None:
    det = detector()  # 60 s unless the direction flips
    assert len(run(det, [update(105.0, 0)])) == 1
    assert run(det, [update(105.0, 30), update(106.0, 59.999)]) == []
    assert [e.direction for e in run(det, [update(95.0, 60)])] == ["undervalued"]  # type: ignore[union-attr]
    back = run(det, [update(105.0, 61)])  # flips back at once
    assert [e.direction for e in back] == ["overvalued"]  # type: ignore[union-attr]
    assert run(det, [update(105.0, 120.999)]) == []
    assert len(run(det, [update(105.0, 121)])) == 1  # 60 s after the last overvalued event
    assert len(run(det, [update(105.0, 121, ticker="BBB")])) == 1  # per ticker


def test_rule_changes_and_switches() -> None:
    det = detector()
    det.configure(FmvChannel(priority=2, rules=FmvRules(deviation_pct=5.0, confidence_min=0.5)))
    assert run(det, [update(104.0)]) == []
    (event,) = run(det, [update(106.0, confidence=0.6)])
    assert event.priority == 2
    assert run(detector(enabled=False), [update(150.0)]) == []
    assert detector().process(Trade("AAA", 1.0, 1.0, T0), 0, 0, 0) == []


def test_snapshot_round_trip() -> None:
    updates = [update(100.0 + (k * 7) % 5 - 2, k * 17.0, ticker="AB"[k % 2]) for k in range(60)]
    whole = run(detector(), updates)
    first = detector()
    head = run(first, updates[:25])
    second = detector()
    second.restore(first.snapshot())
    tail = [e for i, u in enumerate(updates[25:], 25) for e in second.process(u, i, i + 1, i + 2)]
    assert head + tail == whole and len(whole) > 4
    with pytest.raises(ValueError, match="snapshot"):
        second.restore(b"not msgpack at all")
    assert set(second.last) == {"A", "B"}
