"""The aggregator's admission: exact duplicates, cross-source highs/lows, stale live events, bounds."""

from __future__ import annotations

from typing import Any

from aggregator.dedup import Deduplicator
from tickmesh.config import AggregatorConfig
from tickmesh.schema import BigMove, Event, High, Low

S = 1_000_000_000
T0 = 1_700_006_400 * S


def high(
    source: str = "tick",
    s: float = 0.0,
    ticker: str = "AAA",
    cause: str | None = None,
    kind: type = High,
    ingest_delay_s: float = 0.0,
) -> Event:
    time = T0 + round(s * S)
    tag = kind.__struct_config__.tag  # type: ignore[attr-defined]
    fields: dict[str, Any] = {"direction": "up", "pct": 3.0} if kind is BigMove else {}
    return kind(
        id=f"{source}:{tag}:{ticker}:{cause or time}",
        ticker=ticker,
        source=source,
        priority=1,
        time=time,
        price=10.0,
        record_seq=0,
        ingest_ns=time + round(ingest_delay_s * S),
        detected_ns=time,
        **fields,
    )


def dedup(**config: Any) -> Deduplicator:
    return Deduplicator(AggregatorConfig(**config))


NOW = T0 + S  # wall clock one second after the events: fresh


def test_exact_duplicates_are_dropped() -> None:
    d = dedup()
    assert d.admit(high(), NOW) is None
    assert d.admit(high(), NOW) == "exact"
    assert d.admit(high(s=1), NOW) is None  # another cause, another id
    assert d.dropped == {"exact": 1, "cross_source": 0, "stale": 0}


def test_exact_window_is_bounded_fifo() -> None:
    d = dedup(dedup_capacity=1_000)
    events = [high("ohlcv", s=k, kind=BigMove) for k in range(1_001)]
    for e in events:
        assert d.admit(e, NOW) is None
    assert len(d.seen) == 1_000 and len(d.order) == 1_000
    assert d.admit(events[0], NOW) is None  # forgotten: the oldest id left the window
    assert d.admit(events[-1], NOW) == "exact"


def test_cross_source_highs_and_lows_within_the_window() -> None:
    d = dedup()  # 60 s of event time
    assert d.admit(high("tick", s=0), NOW) is None
    assert d.admit(high("ohlcv", s=60), NOW) == "cross_source"  # exactly 60 s: inside
    assert d.admit(high("ohlcv", s=-59.9), NOW) == "cross_source"  # arrival order across channels is arbitrary
    assert d.admit(high("ohlcv", s=60.000000001), NOW) is None  # just outside
    assert d.admit(high("tick", s=61), NOW) == "cross_source"  # now the ohlcv high is the last admitted
    assert d.admit(high("ohlcv", s=62), NOW) is None  # same source: never a cross-source duplicate
    assert d.admit(high("tick", s=1, kind=Low), NOW) is None  # lows are tracked apart from highs
    assert d.admit(high("ohlcv", s=2, kind=Low), NOW) == "cross_source"
    assert d.admit(high("ohlcv", s=2, ticker="BBB"), NOW) is None  # and per ticker
    assert d.admit(high("ohlcv", s=3, kind=BigMove), NOW) is None  # other kinds never collide
    assert d.dropped["cross_source"] == 4


def test_stale_live_events_are_dropped_but_replays_are_not() -> None:
    d = dedup()  # 120 s
    assert d.admit(high(s=0), T0 + 120 * S) is None  # exactly at the limit: kept
    assert d.admit(high(s=1), T0 + 121 * S + 1) == "stale"
    # ingested 10 minutes after its own time: history being replayed, never stale
    assert d.admit(high(s=2, ingest_delay_s=600), T0 + 3_600 * S) is None
    assert d.admit(high(s=3, ingest_delay_s=120), T0 + 3_600 * S) == "stale"  # live at ingest (exactly 120 s)
    assert dedup(max_event_age_s=0).admit(high(s=0), T0 + 10**6 * S) is None  # 0 turns it off
    assert d.dropped["stale"] == 2


def test_a_dropped_event_is_still_remembered_as_seen() -> None:
    d = dedup()
    d.admit(high("tick", s=0), NOW)
    assert d.admit(high("ohlcv", s=1), NOW) == "cross_source"
    assert d.admit(high("ohlcv", s=1), NOW) == "exact"  # its redelivery


def test_configure_trims_and_keeps_state() -> None:
    d = dedup(dedup_capacity=2_000)
    for k in range(1_500):
        d.admit(high("tick", s=k, ticker=f"T{k}"), T0 + k * S)
    d.configure(AggregatorConfig(dedup_capacity=1_000, dedup_window_s=10.0))
    assert len(d.order) == 1_000 and len(d.seen) == 1_000 and len(d.levels) == 1_000
    later = T0 + 1_500 * S
    assert d.admit(high("ohlcv", s=1_499, ticker="T1499"), later) == "cross_source"  # state survived
    assert d.admit(high("ohlcv", s=1_499 + 10, ticker="T1499"), later) == "cross_source"  # the new 10 s window
    assert d.admit(high("ohlcv", s=1_499 + 11, ticker="T1499"), later) is None
    assert d.admit(high("tick", s=0, ticker="T0"), T0 + S) is None  # the oldest ids were trimmed
