"""Detector state as a header plus one row per ticker: written incrementally, restored whole.

Every detector keeps per-ticker state and marks a ticker dirty when a record
touches it. A checkpoint writes the header (detector-wide: version, layout,
ignored counts) and the rows of the dirty tickers only (workers/store.py);
`cleared` says every earlier row is void (all sessions restarted). A restore
reads the header and every row back; anything that does not decode as this
version's layout raises ValueError and changes nothing.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec


class Rows(Protocol):
    """What a detector offers for checkpoints (see workers/detectors.py)."""

    dirty: set[str]
    cleared: bool

    def header(self) -> bytes: ...

    def row(self, ticker: str) -> bytes | None: ...

    def tickers(self) -> Iterable[str]: ...

    def restore_rows(self, header: bytes, rows: Iterable[tuple[str, bytes]]) -> None: ...


def array_of(code: str, data: bytes) -> array[Any]:
    """The array of `data`, without spare room: `array(code, data)` keeps a sixteenth more and three
    items, which every ticker restored from a row would carry for the life of the process."""
    return array(code, array(code, data))


class Changes(msgspec.Struct, frozen=True):
    """What changed since the last export: the header, whether all rows are void, the new rows."""

    header: bytes
    cleared: bool
    rows: dict[str, bytes | None]  # None: the ticker has no state any more


class Whole(msgspec.Struct, array_like=True, frozen=True):
    """A whole detector state in one blob (tests, tools)."""

    header: bytes
    rows: dict[str, bytes]


_whole = msgspec.msgpack.Decoder(Whole)


def export_changes(detector: Rows) -> Changes:
    """The rows of every ticker touched since the last export, in ticker order; forgets the marks.

    In ticker order, the store writes them in one sweep of its table's key order: in the set's
    (hash) order the writer took 2-3 times the CPU (docs/benchmarks.md, 21:40 entry).
    """
    changes = Changes(detector.header(), detector.cleared, {t: detector.row(t) for t in sorted(detector.dirty)})
    detector.dirty = set()
    detector.cleared = False
    return changes


def snapshot(detector: Rows) -> bytes:
    rows = {t: row for t in detector.tickers() if (row := detector.row(t)) is not None}
    return msgspec.msgpack.encode(Whole(detector.header(), rows))


def restore(detector: Rows, data: bytes, kind: str) -> None:
    try:
        whole = _whole.decode(data)
    except Exception as exc:  # the decode boundary: bad bytes of any kind
        raise ValueError(f"not a {kind} detector snapshot: {exc}") from None
    detector.restore_rows(whole.header, whole.rows.items())
