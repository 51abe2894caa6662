"""The supervisor's restart budget: at most N restarts within any window of W seconds, then give up."""

from __future__ import annotations

from collections import deque


class RestartBudget:
    """Counts restarts in a sliding window; `spend` says whether one more is still allowed."""

    def __init__(self, budget: int, window_s: float) -> None:
        self.budget, self.window_s = budget, window_s
        self.times: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Take one restart at monotonic time `now`; False (nothing taken) when the budget is spent."""
        while self.times and now - self.times[0] >= self.window_s:
            self.times.popleft()
        if len(self.times) >= self.budget:
            return False
        self.times.append(now)
        return True
