"""Counters, gauges and latency histograms every process keeps and reports on the bus.

Names are dotted: `<channel>.<metric>[.<label>]` for channel metrics
(`tick.received`, `fmv.rejected.nan_price`, `ohlcv.events.big_move`) and
`<metric>[.<label>]` for process-wide ones (`published`, `deduplicated.exact`).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import psutil
from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 99.0, 99.9)


class Latency:
    """An HDR histogram of microseconds, 1 µs .. 10 min at 2 significant digits."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(1, 600_000_000, 2)
        self.total_us = 0  # the mean is kept here: hdrh's get_mean_value walks every bucket (~3 ms)
        self.count = 0

    def record_ns(self, ns: int) -> None:
        us = max(1, min(ns // 1_000, 600_000_000))
        self.histogram.record_value(us)
        self.total_us += us
        self.count += 1

    def summary(self, prefix: str) -> dict[str, float]:
        """Mean, p50, p99, p99.9 and max; one pass over the histogram (this runs on the hot loop's thread)."""
        if self.count == 0:
            return {}
        out = {f"{prefix}_mean_us": self.total_us / self.count}
        for p, value in self.histogram.get_percentile_to_value_dict(list(PERCENTILES)).items():
            out[f"{prefix}_p{p:g}_us"] = float(value)
        out[f"{prefix}_max_us"] = float(self.histogram.get_max_value())
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
