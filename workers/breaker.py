"""The circuit breaker: a channel whose detector keeps failing stops trying for a while."""

from __future__ import annotations

from collections import deque


class CircuitBreaker:
    """Trips when `ratio` of the last `window` records failed; closes again after `cooloff_ns`.

    While open, records are skipped (the caller counts them). `reset()` closes
    it at once (a new config version from the control plane does that).
    """

    def __init__(self, ratio: float, window: int, cooloff_ns: int) -> None:
        self.ratio, self.cooloff_ns = ratio, cooloff_ns
        self.outcomes: deque[bool] = deque(maxlen=window)  # True = failed
        self.failures = 0
        self.opened_ns: int | None = None
        self.trips = 0

    def allow(self, now_ns: int) -> bool:
        if self.opened_ns is None:
            return True
        if now_ns - self.opened_ns >= self.cooloff_ns:
            self.reset()
            return True
        return False

    def record(self, failed: bool, now_ns: int) -> bool:
        """Note one record's outcome; True if this one tripped the breaker."""
        outcomes = self.outcomes
        if len(outcomes) == outcomes.maxlen and outcomes[0]:
            self.failures -= 1
        outcomes.append(failed)
        self.failures += failed
        if len(outcomes) == outcomes.maxlen and self.failures >= self.ratio * len(outcomes):
            self.opened_ns = now_ns
            self.trips += 1
            return True
        return False

    @property
    def open(self) -> bool:
        return self.opened_ns is not None

    def reset(self) -> None:
        self.opened_ns = None
        self.outcomes.clear()
        self.failures = 0
