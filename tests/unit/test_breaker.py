"""The worker's circuit breaker trips on a failure rate and closes after its cool-off or a reset."""

from __future__ import annotations

from workers.breaker import CircuitBreaker

S = 1_000_000_000


def test_trips_when_the_failure_share_reaches_the_ratio() -> None:
    breaker = CircuitBreaker(ratio=0.5, window=4, cooloff_ns=30 * S)
    assert not any(breaker.record(failed, 0) for failed in (True, False, True))  # window not full yet
    assert breaker.record(False, 0)  # 2 of 4 failed: trips at the 4th
    assert breaker.open and breaker.trips == 1
    assert not breaker.allow(29 * S)
    assert breaker.allow(30 * S) and not breaker.open


def test_old_failures_slide_out_of_the_window() -> None:
    breaker = CircuitBreaker(ratio=0.75, window=4, cooloff_ns=S)
    for failed in (True, True, False, False, False, False, True, True):
        assert not breaker.record(failed, 0)
    assert not breaker.open and breaker.failures == 2


def test_reset_closes_it() -> None:
    breaker = CircuitBreaker(ratio=0.5, window=2, cooloff_ns=60 * S)
    breaker.record(True, 0)
    assert breaker.record(True, 0) and breaker.open
    breaker.reset()
    assert breaker.allow(1) and breaker.failures == 0
