"""The circuit breaker: a channel whose detector keeps failing stops trying for a while."""

from __future__ import annotations


class CircuitBreaker:
    """Trips when `ratio` × `window` records of a run of `window` records failed; closes after `cooloff_ns`.

    Runs are counted back to back (a new run starts every `window` records), so
    successes are noted in bulk, once per batch. While open, records are
    skipped (the caller counts them). `reset()` closes it at once (a new config
    version from the control plane does that).
    """

    def __init__(self, ratio: float, window: int, cooloff_ns: int) -> None:
        self.limit = max(1.0, ratio * window)
        self.window, self.cooloff_ns = window, cooloff_ns
        self.records = 0
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

    def succeeded(self, n: int) -> None:
        self.records += n
        if self.records >= self.window:
            self.records = self.failures = 0

    def failed(self, now_ns: int) -> bool:
        """Note one failed record; True if it tripped the breaker."""
        self.records += 1
        self.failures += 1
        if self.failures >= self.limit:
            self.opened_ns = now_ns
            self.trips += 1
            return True
        if self.records >= self.window:
            self.records = self.failures = 0
        return False

    @property
    def open(self) -> bool:
        return self.opened_ns is not None

    def reset(self) -> None:
        self.opened_ns = None
        self.records = self.failures = 0
