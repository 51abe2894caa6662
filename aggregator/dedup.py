"""The aggregator's admission logic: exact duplicates, cross-source highs/lows, stale live events."""

from __future__ import annotations

from collections import OrderedDict, deque

from tickmesh.config import AggregatorConfig
from tickmesh.schema import Event

CROSS_KINDS = frozenset({"high", "low"})


class Deduplicator:
    """Decides, per event, publish (None) or the reason to drop it; counts drops in `dropped`.

    Memory is bounded: the last `dedup_capacity` ids (FIFO), and the last admitted source and
    event time per (ticker, kind) of highs and lows, at most `dedup_capacity` of them (LRU).
    """

    def __init__(self, config: AggregatorConfig) -> None:
        self.seen: set[str] = set()
        self.order: deque[str] = deque()
        self.levels: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()
        self.dropped: dict[str, int] = {"exact": 0, "cross_source": 0, "stale": 0}
        self.configure(config)

    def configure(self, config: AggregatorConfig) -> None:
        """New limits; what is remembered is kept, trimmed to a smaller capacity."""
        self.capacity = config.dedup_capacity
        self.window_ns = round(config.dedup_window_s * 1e9)
        self.max_age_ns = round(config.max_event_age_s * 1e9)
        self._trim()

    def preload(self, ids: list[str]) -> None:
        """Remember ids published before a restart (oldest first): they are dropped as exact duplicates."""
        for event_id in ids:
            if event_id not in self.seen:
                self.seen.add(event_id)
                self.order.append(event_id)
        self._trim()

    def _trim(self) -> None:
        while len(self.order) > self.capacity:
            self.seen.discard(self.order.popleft())
        while len(self.levels) > self.capacity:
            self.levels.popitem(last=False)

    def admit(self, event: Event, now_ns: int) -> str | None:
        """None to publish the event, else why it is dropped: exact, stale or cross_source."""
        reason = self._reason(event, now_ns)
        if reason is not None:
            self.dropped[reason] += 1
        return reason

    def _reason(self, event: Event, now_ns: int) -> str | None:
        if event.id in self.seen:
            return "exact"
        self.seen.add(event.id)
        self.order.append(event.id)
        if len(self.order) > self.capacity:
            self.seen.discard(self.order.popleft())
        limit = self.max_age_ns
        # Only live events go stale: a record already older than the limit when it was ingested
        # is history being replayed, and replays must not be dropped.
        if limit > 0 and now_ns - event.time > limit and event.ingest_ns - event.time <= limit:
            return "stale"
        kind = str(event.__struct_config__.tag)
        if kind in CROSS_KINDS:
            key = (event.ticker, kind)
            last = self.levels.get(key)
            if last is not None and last[0] != event.source and abs(event.time - last[1]) <= self.window_ns:
                return "cross_source"
            self.levels[key] = (event.source, event.time)
            self.levels.move_to_end(key)
            if len(self.levels) > self.capacity:
                self.levels.popitem(last=False)
        return None
