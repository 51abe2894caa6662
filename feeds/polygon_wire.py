"""Polygon websocket messages → records: parsing, mapping, and dropping what was already seen (pure)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from feeds.records import RowError, make, to_ns
from tickmesh.schema import Bar, FairMarketValue, Record, Trade

DAY_NS = 86_400 * 1_000_000_000
BAR_EVENTS = ("AM", "A")


@dataclass
class FrameResult:
    """What one websocket frame (a JSON array of messages) yielded."""

    records: list[Record] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "message 2 (T): price: Expected ..."
    data: int = 0  # messages that were not statuses (valid, invalid, duplicate or ignored)


class PolygonDecoder:
    """Turns frames into records, keeping what is needed to drop replayed messages.

    Trades are dropped when their `q` is not above the last one seen for the ticker on
    the same (UTC) day, since Polygon's sequence numbers increase per ticker and reset
    daily; bars when their start is not after the last seen for (event, ticker); FMV
    updates when their time is not after the last seen for the ticker. State grows
    with the number of tickers only.
    """

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self._last_q: dict[str, tuple[int, int]] = {}
        self._last_bar: dict[tuple[str, str], int] = {}
        self._last_fmv: dict[str, int] = {}

    def decode(self, frame: str | bytes) -> FrameResult:
        result = FrameResult()
        self.counters["frames"] += 1
        try:
            messages = msgspec.json.decode(frame)
        except (msgspec.DecodeError, RecursionError) as exc:
            self.counters["rejected.malformed_frame"] += 1
            result.errors.append(f"not JSON: {exc}")
            return result
        if isinstance(messages, dict):
            messages = [messages]
        if not isinstance(messages, list):
            self.counters["rejected.malformed_frame"] += 1
            result.errors.append(f"expected an array of messages, got {type(messages).__name__}")
            return result
        for index, message in enumerate(messages):
            self._message(index, message, result)
        return result

    def _message(self, index: int, message: Any, result: FrameResult) -> None:
        ev = message.get("ev") if isinstance(message, dict) else None
        if not isinstance(ev, str):
            self.counters["rejected.not_a_message"] += 1
            result.errors.append(f"message {index}: not an object with an `ev` field")
            return
        self.counters[f"messages.{ev}"] += 1
        if ev == "status":
            result.statuses.append(message)
            return
        result.data += 1
        try:
            record = self._record(ev, message)
        except RowError as exc:
            self.counters[f"rejected.{ev}"] += 1
            result.errors.append(f"message {index} ({ev}): {exc}")
            return
        if record is None:
            return
        if self._seen(ev, record):
            self.counters[f"duplicates.{ev}"] += 1
            return
        self.counters["records"] += 1
        result.records.append(record)

    def _record(self, ev: str, m: dict[str, Any]) -> Record | None:
        if ev == "T":
            return make(
                Trade,
                m.get("sym"),
                m.get("p"),
                m.get("s", 0),
                to_ns(m.get("t"), "t"),
                m.get("x"),
                m.get("c") or (),
                m.get("q"),
            )
        if ev in BAR_EVENTS:
            return make(
                Bar,
                m.get("sym"),
                m.get("o"),
                m.get("h"),
                m.get("l"),
                m.get("c"),
                m.get("v"),
                to_ns(m.get("s"), "s"),
                to_ns(m.get("e"), "e"),
                m.get("vw"),
                m.get("av"),
            )
        if ev == "FMV":
            return make(FairMarketValue, m.get("sym"), m.get("fmv"), to_ns(m.get("t"), "t"))
        self.counters[f"ignored.{ev}"] += 1  # quotes, LULD, ...: not ours
        return None

    def _seen(self, ev: str, record: Record) -> bool:
        if isinstance(record, Trade):
            if record.sequence is None:
                return False
            day = record.timestamp // DAY_NS
            last = self._last_q.get(record.ticker)
            if last is not None and (day, record.sequence) <= last:
                return True
            self._last_q[record.ticker] = (day, record.sequence)
            return False
        if isinstance(record, Bar):
            key = (ev, record.ticker)
            if record.start <= self._last_bar.get(key, -1):
                return True
            self._last_bar[key] = record.start
            return False
        if record.timestamp <= self._last_fmv.get(record.ticker, -1):
            return True
        self._last_fmv[record.ticker] = record.timestamp
        return False
