"""Clock offsets: each process's wall clock minus control's, estimated from its status reports' time stamps.

A report carries `time_ns` (the sender's clock when it left) and control notes
`seen_ns` (its own clock on arrival), so time_ns - seen_ns = offset - transit,
with transit >= 0: every report gives a lower bound of the offset, too low by
its transit time (network, queues, control's own loop). The largest of the last
few bounds — the report that travelled fastest — is the estimate; on one host
or a quiet LAN it is within a few milliseconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

SAMPLES = 8  # reports kept per process: a clock that is stepped shows within 8 status intervals
SKEW_LIMIT_MS = 100.0  # tickmesh-admin metrics flags processes further than this from the router's clock


class ClockOffset:
    """One process's offset estimate from its recent reports."""

    def __init__(self) -> None:
        self._bounds: deque[int] = deque(maxlen=SAMPLES)

    def add(self, time_ns: int, seen_ns: int) -> None:
        self._bounds.append(time_ns - seen_ns)

    @property
    def offset_ns(self) -> int:
        """Its clock minus control's (0 before any report)."""
        return max(self._bounds, default=0)


def skewed(offsets_ms: Iterable[tuple[str, float]], reference: str = "router") -> dict[str, float]:
    """{process: its offset from `reference`'s clock in ms} for those beyond SKEW_LIMIT_MS; against
    control's clock when `reference` is not among them. The router stamps ingest time, so latency
    and staleness figures mix its clock with the aggregator's and the workers'."""
    offsets = dict(offsets_ms)
    base = offsets.get(reference, 0.0)
    return {p: off - base for p, off in offsets.items() if abs(off - base) > SKEW_LIMIT_MS}
