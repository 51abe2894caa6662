"""Dedup accuracy: records whose events are known (distinct, duplicate, cross-source) and the verdict (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from bench.workload import NS, WireRecord, symbol

Key = tuple[str, str, str, int]  # (kind, source, ticker, event time)


class DedupPlan:
    """Records in phases whose published events are known exactly.

    Per `D` ticker: bar A (ends t0, +3 %: big_move and a close-at-high `high`),
    then trades 100 → 101 (a tick `high` at t0 + 5 s: a cross-source duplicate
    of bar A's high, within 60 s, so it must be dropped), then bar B (ends
    t0 + 66 s, +2.4 %: big_move and `high`, more than 60 s after the tick high,
    so it must pass). Per `E` ticker: trades only, a tick `high` that must pass.
    The last phase sends every record again: duplicate records, which must
    not yield a single extra event.
    """

    def __init__(self, tickers: int, now_ns: int) -> None:
        self.d = [symbol("D", i) for i in range(tickers)]
        self.e = [symbol("E", i) for i in range(max(1, tickers // 4))]
        self.t0 = now_ns - 70 * NS  # inside the aggregator's 120 s staleness limit, in the past

    def phases(self) -> list[list[WireRecord]]:
        t0 = self.t0
        bar_a = [("B", d, 100.0, 103.0, 99.9, 103.0, 1_000.0, t0 - 60 * NS, t0) for d in self.d]
        trades = [("T", t, 100.0, 100.0, t0 + 1 * NS) for t in self.d + self.e]
        trades += [("T", t, 101.0, 100.0, t0 + 5 * NS) for t in self.d + self.e]
        bar_b = [("B", d, 103.0, 105.5, 102.9, 105.5, 1_000.0, t0 + 6 * NS, t0 + 66 * NS) for d in self.d]
        return [bar_a, trades, bar_b, bar_a + trades + bar_b]

    def expected(self) -> set[Key]:
        """Every distinct event that must be published, once."""
        t0, out = self.t0, set()
        for d in self.d:
            for kind in ("big_move", "high"):
                out.add((kind, "ohlcv", d, t0))
                out.add((kind, "ohlcv", d, t0 + 66 * NS))
        out.update(("high", "tick", e, t0 + 5 * NS) for e in self.e)
        return out

    def cross_source(self) -> set[Key]:
        """The tick highs that duplicate bar A's high of the same ticker: none may be published."""
        return {("high", "tick", d, self.t0 + 5 * NS) for d in self.d}

    def expected_after_phase(self, phase: int) -> int:
        """How many events the subscriber has seen once `phase` (0-based) is fully published."""
        return [2 * len(self.d), 2 * len(self.d) + len(self.e), 4 * len(self.d) + len(self.e)][min(phase, 2)]

    @property
    def duplicate_records(self) -> int:
        return len(self.phases()[-1])


def judge(plan: DedupPlan, published: Iterable[Key], redelivered: int) -> dict[str, object]:
    """The verdict from the events the subscriber saw (the plan's tickers only; an event is its key)."""
    keys = Counter(published)
    expected = plan.expected()
    mine = {key: n for key, n in keys.items() if key[2][:1] in ("D", "E")}
    missing = sorted(expected - set(mine))
    unexpected = sorted(k for k in mine if k not in expected)
    leaked_cross = sorted(k for k in mine if k in plan.cross_source())
    repeated = sum(n - 1 for n in mine.values() if n > 1)
    return {
        "distinct_expected": len(expected),
        "distinct_published": len(expected & set(mine)),
        "distinct_suppressed": len(missing),
        "duplicate_records_injected": plan.duplicate_records,
        "cross_source_injected": len(plan.cross_source()),
        "redelivered_events_injected": redelivered,
        "duplicates_published": repeated + len(unexpected),
        "cross_source_published": len(leaked_cross),
        "all_duplicates_suppressed": repeated == 0 and not unexpected,
        "no_distinct_suppressed": not missing,
        "accuracy": (len(expected & set(mine)) / len(expected)) if expected else 1.0,
        "examples_missing": [list(k) for k in missing[:5]],
        "examples_unexpected": [list(k) for k in unexpected[:5]],
    }
