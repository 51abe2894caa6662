"""The worker's circuit breaker trips on a failure rate and closes after its cool-off or a reset."""

from __future__ import annotations

from workers.breaker import CircuitBreaker

S = 1_000_000_000


def test_trips_when_half_of_a_run_failed() -> None:
    breaker = CircuitBreaker(ratio=0.5, window=4, cooloff_ns=30 * S)
    assert not breaker.failed(0)
    breaker.succeeded(1)
    assert breaker.failed(0)  # 2 of a run of 4
    assert breaker.open and breaker.trips == 1
    assert not breaker.allow(29 * S)
    assert breaker.allow(30 * S) and not breaker.open


def test_failures_spread_over_runs_do_not_trip() -> None:
    breaker = CircuitBreaker(ratio=0.75, window=4, cooloff_ns=S)
    for _ in range(5):  # 2 failures in every run of 4: a 50 % rate, under 75 %
        assert not breaker.failed(0)
        assert not breaker.failed(0)
        breaker.succeeded(2)
    assert not breaker.open and breaker.failures == 0


def test_successes_in_bulk_start_a_new_run() -> None:
    breaker = CircuitBreaker(ratio=0.5, window=10, cooloff_ns=S)
    for _ in range(4):
        breaker.failed(0)
    breaker.succeeded(1_000)
    assert breaker.failures == 0 and breaker.records == 0


def test_reset_closes_it() -> None:
    breaker = CircuitBreaker(ratio=0.5, window=2, cooloff_ns=60 * S)
    assert breaker.failed(0) and breaker.open
    breaker.reset()
    assert breaker.allow(1) and breaker.failures == 0
