"""Driving a stage: the load generator and subscriber processes, measurement windows, latency summaries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from hdrh.histogram import HdrHistogram

from bench.procs import Stage, StageError, cpu_seconds, poll_until
from bench.workload import Mix

log = logging.getLogger(__name__)
# Percentiles drawn on the latency chart (and kept in the JSON for it).
CURVE = (0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)
BASE_SETTINGS: dict[str, Any] = {}  # the defaults: the mesh as deployed (status every 1 s)


class LoadProc:
    """A `bench.load` process of the stage and its control socket."""

    def __init__(
        self, stage: Stage, name: str, mix: Mix, *, blast: bool = False, batch: int = 100, hwm: int = 1_000
    ) -> None:
        self.stage, self.name = stage, name
        self.endpoint = stage.endpoint(f"{name}.ctl")
        args = ["--control", self.endpoint, "--mix", msgspec.json.encode(mix).decode(), "--name", name]
        args += ["--batch", str(batch), "--hwm", str(hwm)] + (["--blast"] if blast else [])
        stage.spawn(name, "-m", "bench.load", *args)
        self.stage.call(self.endpoint, {"op": "stats"}, timeout=30)  # answers once it is up

    def rate(self, rate: float) -> dict[str, Any]:
        return self.stage.call(self.endpoint, {"op": "rate", "rate": rate})

    def stats(self) -> dict[str, Any]:
        return self.stage.call(self.endpoint, {"op": "stats"})

    def warm(self, tick: tuple[int, int], ohlcv: tuple[int, int], points: int) -> dict[str, Any]:
        return self.stage.call(
            self.endpoint, {"op": "warm", "tick": list(tick), "ohlcv": list(ohlcv), "points": points}
        )

    def stop(self) -> dict[str, Any]:
        """Flush (the router acknowledges all it was sent) and exit."""
        reply = self.stage.call(self.endpoint, {"op": "stop"}, timeout=30)
        self.stage.stop([self.name])
        return reply


@dataclass
class Taken:
    """What the subscriber saw in one window."""

    latency: dict[str, HdrHistogram]
    counts: dict[str, int]
    keys: list[tuple[str, str, str, int]]
    payloads: list[bytes]


class SinkProc:
    """The `bench.sink` subscriber process."""

    def __init__(self, stage: Stage, keep: bool = False) -> None:
        self.stage = stage
        self.endpoint = stage.endpoint("sink.ctl")
        stage.spawn("sink", "-m", "bench.sink", "--control", self.endpoint, *(["--keep"] if keep else []))

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Return once the subscriber has heard the publisher (a heartbeat): it will not miss the start."""
        poll_until(
            lambda: self.stage.call(self.endpoint, {"op": "ready"}, timeout=30).get("heard"),
            timeout,
            "the subscriber to hear the publisher",
            interval=0.1,
        )

    def take(self) -> Taken:
        raw = self.stage.call(self.endpoint, {"op": "take"}, timeout=30)
        latency = {name: HdrHistogram.decode(data) for name, data in raw["latency"].items()}
        keys = [tuple(k) for k in raw["keys"]]
        return Taken(latency, raw["counts"], keys, raw["payloads"])


def summarize(histogram: HdrHistogram | None) -> dict[str, Any]:
    """count, mean, p50, p99, p99.9, max (µs) and the chart's percentile curve."""
    if histogram is None or histogram.get_total_count() == 0:
        return {"count": 0}
    return {
        "count": histogram.get_total_count(),
        "mean_us": round(histogram.get_mean_value(), 1),
        "p50_us": histogram.get_value_at_percentile(50.0),
        "p99_us": histogram.get_value_at_percentile(99.0),
        "p99.9_us": histogram.get_value_at_percentile(99.9),
        "max_us": histogram.get_max_value(),
        "curve": [[p, histogram.get_value_at_percentile(p)] for p in CURVE],
    }


class Window:
    """A measurement window: per-process counters and CPU at its start; `close` gives rates and CPU shares."""

    def __init__(self, stage: Stage, names: Iterable[str]) -> None:
        self.stage, self.names = stage, list(names)
        self.start = {n: s for n, s in stage.fresh(self.names).items() if n in self.names}
        self.pids = stage.pids()
        self.cpu0 = cpu_seconds(self.pids)
        self.t0 = time.monotonic()

    def close(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        cpu1 = cpu_seconds(self.pids)
        end = self.stage.fresh(self.names)
        deltas: dict[str, float] = {}
        rates: dict[str, float] = {}
        for name in self.names:
            a, b = self.start.get(name), end.get(name)
            if a is None or b is None or b.pid != a.pid:
                continue
            span = max(1e-9, (b.time_ns - a.time_ns) / 1e9)
            for key, value in b.counters.items():
                delta = value - a.counters.get(key, 0)
                if delta:
                    deltas[key] = deltas.get(key, 0) + delta
                    rates[key] = rates.get(key, 0.0) + delta / span
        cpu = {n: round(100 * (cpu1[n] - self.cpu0[n]) / wall, 1) for n in cpu1 if n in self.cpu0}
        return {"wall_s": round(wall, 2), "deltas": deltas, "rates": rates, "cpu_percent": cpu}


def hold(stage: Stage, seconds: float, sample: Callable[[], None] | None = None, every: float = 0.25) -> None:
    """Let `seconds` pass, checking that every process is alive (and sampling) as it does."""
    deadline = time.monotonic() + seconds
    while True:
        stage.check_alive()
        stage.read_bus()
        if sample is not None:
            sample()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(every, left))


SHED = (".conflated", ".dropped_oldest", ".paused_dropped")


def accounted(statuses: dict[str, Any]) -> int:
    """Records processed, shed (conflated, dropped) or rejected, over every process that reported."""
    return sum(
        v
        for status in statuses.values()
        for k, v in status.counters.items()
        if k.endswith((".processed", *SHED)) or ".rejected." in k
    )


def wait_processed(stage: Stage, names: list[str], at_least: int, timeout: float) -> int:
    """Wait until `at_least` records are accounted for (processed, shed or rejected); the count reached."""
    reached = [0]

    def done() -> bool:
        reached[0] = accounted(stage.fresh(names))
        return reached[0] >= at_least

    try:
        poll_until(done, timeout, f"{at_least} records accounted for", interval=0.2)
    except StageError:
        log.warning("only %d of %d records accounted for after %.0f s", reached[0], at_least, timeout)
    return reached[0]
