"""Counters, gauges and latency histograms every process keeps and reports on the bus.

Names are dotted: `<channel>.<metric>[.<label>]` for channel metrics
(`tick.received`, `fmv.rejected.nan_price`, `ohlcv.events.big_move`) and
`<metric>[.<label>]` for process-wide ones (`published`, `deduplicated.exact`).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable

import psutil
from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 99.0, 99.9)
WINDOW_S = 60.0  # latency summaries cover the last one to two of these


class Latency:
    """HDR histograms of microseconds, 1 µs .. 10 min at 2 significant digits.

    `histogram` holds what was recorded since the last rotation. `summary` (every status
    report) rotates it every WINDOW_S and summarizes the current and the previous window
    together: the last one to two minutes, so an operator sees the mesh as it is now, not
    the warm-up of an hour ago.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.histogram = self._new()
        self.total_us = 0  # the mean is kept here: hdrh's get_mean_value walks every bucket (~3 ms)
        self.count = 0
        self._previous, self._previous_total_us, self._previous_count = self._new(), 0, 0
        self._clock = clock
        self._rotate_at = clock() + WINDOW_S

    @staticmethod
    def _new() -> HdrHistogram:
        return HdrHistogram(1, 600_000_000, 2)

    def record_ns(self, ns: int) -> None:
        us = max(1, min(ns // 1_000, 600_000_000))
        self.histogram.record_value(us)
        self.total_us += us
        self.count += 1

    def summary(self, prefix: str) -> dict[str, float]:
        """Mean, p50, p99, p99.9 and max over the last one to two windows (runs on the hot loop's thread)."""
        now = self._clock()
        if now >= self._rotate_at:
            self._previous, self._previous_total_us, self._previous_count = self.histogram, self.total_us, self.count
            self.histogram, self.total_us, self.count = self._new(), 0, 0
            self._rotate_at = now + WINDOW_S
        count = self.count + self._previous_count
        if count == 0:
            return {}
        both = self._new()
        both.add(self.histogram)
        both.add(self._previous)
        out = {f"{prefix}_mean_us": (self.total_us + self._previous_total_us) / count}
        for p, value in both.get_percentile_to_value_dict(list(PERCENTILES)).items():
            out[f"{prefix}_p{p:g}_us"] = float(value)
        out[f"{prefix}_max_us"] = float(both.get_max_value())
        return out


class Metrics:
    """One process's metrics: monotonic counters, point-in-time gauges, latencies."""

    def __init__(self) -> None:
        self.counters: defaultdict[str, int] = defaultdict(int)
        self.gauges: dict[str, float] = {}
        self.latencies: defaultdict[str, Latency] = defaultdict(Latency)
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent()  # primes the CPU meter
        self.started_ns = time.time_ns()

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def snapshot_gauges(self) -> dict[str, float]:
        """Gauges with latency summaries and this process's RSS, CPU and uptime."""
        out = dict(self.gauges)
        for name, latency in self.latencies.items():
            out.update(latency.summary(name))
        out["process.rss_bytes"] = float(self._process.memory_info().rss)
        out["process.cpu_percent"] = float(self._process.cpu_percent())
        out["process.uptime_s"] = (time.time_ns() - self.started_ns) / 1e9
        return out
