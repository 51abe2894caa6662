"""Detector state as a header plus one row per ticker: written incrementally, restored whole.

Every detector keeps per-ticker state and marks a ticker dirty when a record
touches it. A checkpoint (a `Cut`, encoded a slice at a time between batches)
writes the header (detector-wide: version, layout, ignored counts) and the rows
of the dirty tickers only, as they stood at the cut (workers/store.py);
`cleared` says every earlier row is void (all sessions restarted). A restore
reads the header and every row back; anything that does not decode as this
version's layout raises ValueError and changes nothing.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec

from tickmesh.schema import Record


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


class Cut:
    """The rows of the tickers touched since the last cut, as they stand at this cut, encoded a slice
    at a time so that a checkpoint stops the loop only for the cut (a sort of the changed tickers)
    and one slice at a time, and handed on (`hand`, the store's writer) about `chunk` rows at a
    time, so that no more than a few chunks of them are in memory at once (docs/pipeline.md).

    The detector's marks move to the cut at once; the loop then calls `before` with each batch's
    records before the detector sees them (a ticker about to change gives its row first, as it is
    at the cut) and `step` between batches, until it returns True: every row is handed on. Any
    other change to the detector's state (a new config) must `abandon` the cut first: its tickers
    go back into the detector's marks and the next cut writes them as they are then (the rows
    handed on already must be dropped with it: the store rolls its transaction back).
    """

    def __init__(self, detector: Rows, hand: Callable[[dict[str, bytes | None]], object], chunk: int) -> None:
        self.detector, self.hand, self.chunk = detector, hand, chunk
        self.header, self.cleared = detector.header(), detector.cleared
        self.waiting = detector.dirty  # tickers whose row is not encoded yet
        # in ticker order the store writes them in one sweep of its table's key order: in the set's
        # (hash) order its upserts took 10-45 % longer (docs/benchmarks.md, 21:40 entry)
        self.order = sorted(self.waiting)
        self.rows: dict[str, bytes | None] = {}  # encoded, not handed on yet (None: the ticker has no state)
        self.next = 0  # in `order`, the first not yet taken by `step`
        detector.dirty = set()
        detector.cleared = False

    def before(self, records: Iterable[Record]) -> None:
        """Encode the rows of waiting tickers these records are about to change."""
        waiting, rows, row = self.waiting, self.rows, self.detector.row
        for record in records:
            if record.ticker in waiting:
                waiting.discard(record.ticker)
                rows[record.ticker] = row(record.ticker)
        if len(rows) >= self.chunk:
            self._hand()

    def step(self, limit: int | None = None) -> bool:
        """Encode the rows of up to `limit` more tickers (all of them with None), handing on each
        full chunk; True once all are encoded and handed on."""
        waiting, rows, row, order = self.waiting, self.rows, self.detector.row, self.order
        end = len(order) if limit is None else min(len(order), self.next + limit)
        for ticker in order[self.next : end]:
            if ticker in waiting:
                waiting.discard(ticker)
                rows[ticker] = row(ticker)
        self.next = end
        done = end == len(order)
        if rows and (done or len(rows) >= self.chunk):
            self._hand()
        return done

    def abandon(self) -> None:
        """Give the cut's tickers back to the detector's marks (and its `cleared`): the next cut writes them."""
        self.detector.dirty.update(self.order)
        self.detector.cleared |= self.cleared

    def _hand(self) -> None:
        self.hand(self.rows)
        self.rows = {}


def export_changes(detector: Rows) -> Changes:
    """The rows of every ticker touched since the last export, in ticker order; forgets the marks."""
    rows: dict[str, bytes | None] = {}
    cut = Cut(detector, rows.update, len(detector.dirty) or 1)
    cut.step()
    return Changes(cut.header, cut.cleared, rows)


def snapshot(detector: Rows) -> bytes:
    rows = {t: row for t in detector.tickers() if (row := detector.row(t)) is not None}
    return msgspec.msgpack.encode(Whole(detector.header(), rows))


def restore(detector: Rows, data: bytes, kind: str) -> None:
    try:
        whole = _whole.decode(data)
    except Exception as exc:  # the decode boundary: bad bytes of any kind
        raise ValueError(f"not a {kind} detector snapshot: {exc}") from None
    detector.restore_rows(whole.header, whole.rows.items())
