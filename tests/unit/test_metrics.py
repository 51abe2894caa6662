"""Latency summaries: the last one to two windows, so a warm-up does not haunt the figures for ever."""

from __future__ import annotations

from tickmesh.metrics import WINDOW_S, Latency


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_summaries_cover_the_current_and_the_previous_window_only() -> None:
    clock = Clock()
    latency = Latency(clock)
    assert latency.summary("x") == {}
    for _ in range(100):
        latency.record_ns(200_000_000)  # a 200 ms warm-up
    assert latency.summary("x")["x_p99_us"] >= 199_000
    clock.now += WINDOW_S
    latency.summary("x")  # a status report rotates: the warm-up is now the previous window
    for _ in range(100):
        latency.record_ns(1_000_000)
    both = latency.summary("x")
    assert both["x_p50_us"] < 1_100 and both["x_p99_us"] >= 199_000 and both["x_mean_us"] == 100_500
    clock.now += WINDOW_S
    latency.summary("x")  # the warm-up is gone; the 1 ms records are the previous window
    latency.record_ns(2_000_000)
    recent = latency.summary("x")
    assert recent["x_max_us"] < 2_100 and recent["x_p50_us"] < 1_100
    assert recent["x_mean_us"] == (100 * 1_000 + 2_000) / 101
    for _ in range(2):  # quiet for two windows: nothing left to summarize
        clock.now += WINDOW_S
        latency.summary("x")
    assert latency.summary("x") == {}
