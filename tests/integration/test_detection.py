"""Detection through real processes: the exact set of events, with cross-source and redelivered duplicates gone."""

from __future__ import annotations

import time

from tests.mesh import Mesh, collect, drain, poll_until
from tickmesh.schema import Bar, FairMarketValue, Record, Trade

S = 1_000_000_000


def test_a_multi_channel_stream_yields_exactly_its_events_and_no_duplicates(mesh: Mesh) -> None:
    sub = mesh.subscriber()
    now = time.time_ns()
    ticks: list[Record] = [
        Trade("AAPL", 100.0, 10, now - 50 * S),  # sets the session level
        Trade("AAPL", 100.5, 10, now - 48 * S),  # +0.5 %: a new high
        Trade("NVDA", 200.0, 10, now - 10 * S),
        FairMarketValue("NVDA", 197.0, now - 9 * S),  # 1.5 % under the last trade
    ]
    bars: list[Record] = [
        # +2.02 %, closing at its high: a big move, and a high 48 s after the tick high (cross-source)
        Bar("AAPL", open=99.0, high=101.0, low=98.9, close=101.0, volume=1_000, start=now - 60 * S, end=now),
        Bar("MSFT", open=100.0, high=100.6, low=99.9, close=100.5, volume=1_000, start=now - 60 * S, end=now),
    ]
    mesh.push(ticks)
    first = collect(sub, lambda r: len(r) >= 2)
    mesh.push(bars)
    received = first + collect(sub, lambda r: len(r) >= 1)
    mesh.push(ticks + bars)  # a producer redelivers everything
    received += drain(sub, quiet_ms=800)

    got = sorted((p.event.__struct_config__.tag, p.event.source, p.event.ticker) for p in received)
    assert got == [
        ("big_move", "ohlcv", "AAPL"),
        ("fmv_deviation", "fmv", "NVDA"),
        ("high", "tick", "AAPL"),
    ]
    assert len({p.event.id for p in received}) == 3
    counters = poll_until(lambda: (c := mesh.counters()).get("ohlcv.processed") == 4 and c, what="counters")
    assert counters["deduplicated.cross_source"] == 1  # the bar's close-at-high
    assert counters["ohlcv.events.high"] == 1 and counters["published"] == 3
    assert counters["ohlcv.ignored.out_of_order"] == 2  # the redelivered bars
    assert counters["tick.processed"] == 6 and counters["fmv.processed"] == 2
