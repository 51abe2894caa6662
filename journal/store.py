"""The journal's storage interface: every SQL statement, written once; the backends supply a connection."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import msgspec
from msgspec import Struct

from journal.migrations import VERSION_TABLE
from journal.query import EventQuery, page_token
from tickmesh.boundary import Rejection, decode
from tickmesh.schema import Event, Publication, RawPublication, encoder

COLUMNS = ("n", "id", "kind", "ticker", "source", "priority", "time", "price", "epoch", "seq", "published_ns", "run")
INSERT_COLUMNS = ("id", "kind", "ticker", "source", "priority", "time", "price", "epoch", "seq", "published_ns",
                  "payload", "stored_ns", "run")  # fmt: skip
event_decoder = msgspec.msgpack.Decoder(Event)
# What the journal takes of one publication: INSERT_COLUMNS up to the payload (the writer adds stored_ns, run).
Entry = tuple[str, str, str, str, int, int, float, int, int, int, bytes]
Row = tuple[Any, ...]  # INSERT_COLUMNS, in order
ROWS_PER_INSERT = 2_000  # rows in one INSERT: 2,000 wrote faster than 500 (docs/benchmarks.md, 2026-12-06)


class StoreError(RuntimeError):
    """The journal store cannot be opened or used: the message says which and why."""


class StoredEvent(Struct, frozen=True):
    """One journaled event: its envelope columns and the event itself."""

    n: int
    id: str
    kind: str
    ticker: str
    source: str
    priority: int
    time: int
    price: float
    epoch: int
    seq: int
    published_ns: int
    run: str
    payload: bytes

    def event(self) -> Event:
        return event_decoder.decode(self.payload)

    def publication(self) -> Publication:
        return Publication(self.seq, self.epoch, self.published_ns, self.event())

    def as_dict(self) -> dict[str, object]:
        """The event's fields plus seq, epoch, published_ns and run: what --json prints."""
        out: dict[str, object] = msgspec.to_builtins(self.event())
        out.update(seq=self.seq, epoch=self.epoch, published_ns=self.published_ns, run=self.run)
        return out

    def key(self, query: EventQuery) -> tuple[int, ...]:
        return (self.time, self.n) if query.order == "time" else (self.epoch, self.seq, self.n)


class StoreStats(Struct, frozen=True):
    rows: int
    bytes: int
    oldest_time_ns: int  # data time of the oldest stored row (0 when empty)


def entry_of(publication: Publication) -> Entry:
    """The Entry of a decoded publication (its event encoded again, as on the wire)."""
    return _entry(publication.event, publication.epoch, publication.seq, publication.published_ns,
                  encoder.encode(publication.event))  # fmt: skip


def entry_of_raw(publication: RawPublication) -> Entry | Rejection:
    """The Entry of a publication whose event is still encoded: validated as strictly as any event, stored
    as the very bytes published; a Rejection if the event is not a valid one."""
    event = decode(event_decoder, publication.event)
    if isinstance(event, Rejection):
        return event
    return _entry(event, publication.epoch, publication.seq, publication.published_ns, bytes(publication.event))


def _entry(e: Event, epoch: int, seq: int, published_ns: int, payload: bytes) -> Entry:
    kind = e.__struct_config__.tag  # type: ignore[union-attr]
    return (e.id, kind, e.ticker, e.source, e.priority, e.time, e.price, epoch, seq, published_ns, payload)  # type: ignore[return-value]


def row_of(publication: Publication, run: str, stored_ns: int) -> Row:
    """The INSERT_COLUMNS of one publication."""
    return (*entry_of(publication), stored_ns, run)


class SqlStore:
    """SQL shared by both backends, written with `?` placeholders; a backend sets `placeholder`."""

    backend = ""
    placeholder = "?"
    migrations: list[list[str]] = []
    rows_per_insert = ROWS_PER_INSERT  # a backend lowers it to its limit on parameters per statement

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    # -- what a backend provides ---------------------------------------------------------
    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def size_bytes(self) -> int:
        raise NotImplementedError

    def has_table(self, name: str) -> bool:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self.sql(text), params)

    def migrate(self) -> int:
        """Apply the migrations not yet applied; the schema version now."""
        with self.transaction():
            self.execute(VERSION_TABLE)
        version = self.version()
        if version > len(self.migrations):
            known = len(self.migrations)
            raise StoreError(f"journal schema version {version} is newer than this tickmesh knows ({known})")
        for number, statements in enumerate(self.migrations[version:], start=version + 1):
            with self.transaction():
                for statement in statements:
                    self.execute(statement)
                self.execute("INSERT INTO schema_version (version, applied_ns) VALUES (?, ?)", (number, time.time_ns()))
        return len(self.migrations)

    def version(self) -> int:
        return int(self.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])

    def check_schema(self) -> None:
        """For readers: the journal exists and is a version this code reads."""
        if not self.has_table("schema_version") or self.version() == 0:
            raise StoreError("the journal is empty: no schema yet (has tickmesh-journal run?)")
        if self.version() > len(self.migrations):
            raise StoreError(f"journal schema version {self.version()} is newer than this tickmesh knows")

    def position(self, run: str = "") -> tuple[int, int] | None:
        """(epoch, seq) of the last publication journaled for `run`, or None if that run has none yet."""
        row = self.execute("SELECT epoch, seq FROM run_position WHERE run = ?", (run,)).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def write(self, rows: Sequence[Row], position: tuple[int, int], run: str = "") -> int:
        """Insert `rows` (an id already stored for the run is skipped) and the run's position in one
        transaction; how many rows were new."""
        with self.transaction():
            inserted = self.insert_rows(rows)
            self.execute(
                "INSERT INTO run_position (run, epoch, seq, updated_ns) VALUES (?, ?, ?, ?) ON CONFLICT (run) "
                "DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, updated_ns = excluded.updated_ns",
                (run, *position, time.time_ns()),
            )
        return inserted

    def has_run(self, run: str) -> bool:
        """Whether any event or position is stored under `run` (served by the (run, id) index)."""
        found = self.execute("SELECT 1 FROM events WHERE run = ? LIMIT 1", (run,)).fetchone()
        return found is not None or self.position(run) is not None

    def delete_run(self, run: str) -> int:
        """Delete every event of `run` and its position, in one transaction; rows deleted."""
        with self.transaction():
            deleted = self.execute("DELETE FROM events WHERE run = ?", (run,)).rowcount
            self.execute("DELETE FROM run_position WHERE run = ?", (run,))
        return max(0, int(deleted))

    def kinds(self, run: str) -> dict[str, int]:
        """Events stored under `run`, per kind."""
        rows = self.execute("SELECT kind, COUNT(*) FROM events WHERE run = ? GROUP BY kind", (run,)).fetchall()
        return {str(kind): int(n) for kind, n in rows}

    def insert_rows(self, rows: Sequence[Row]) -> int:
        """Insert rows inside the caller's transaction, skipping (run, id) already stored; how many were new.

        `rows_per_insert` rows per statement, not one (executemany): the driver gives up the GIL while the
        database works and takes it back after, so once per statement rather than once per row; with the
        journal's main thread decoding beside it, waiting for the GIL took half the writer's time.
        """
        inserted, step = 0, self.rows_per_insert
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            inserted += self.execute(insert_sql(len(chunk)), list(chain.from_iterable(chunk))).rowcount
        return max(0, inserted)

    def query(self, query: EventQuery) -> list[StoredEvent]:
        text, params = select_sql(query)
        rows = self.execute(text, params).fetchall()
        return [StoredEvent(*row[:-1], bytes(row[-1])) for row in rows]  # type: ignore[call-arg]

    def pages(self, query: EventQuery) -> Iterator[StoredEvent]:
        """Every row the query matches, a page of `query.limit` at a time (the offset applies once)."""
        while True:
            rows = self.query(query)
            yield from rows
            if len(rows) < query.limit:
                return
            query = msgspec.structs.replace(query, after=rows[-1].key(query), offset=0)

    def next_token(self, query: EventQuery, rows: list[StoredEvent]) -> str:
        return page_token(query, rows[-1].key(query)) if len(rows) == query.limit else ""

    def stats(self, rows: int | None = None) -> StoreStats:
        """Rows (counted unless the caller keeps count: COUNT(*) reads a whole index), bytes, oldest data time."""
        if rows is None:
            rows = int(self.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        oldest = self.execute("SELECT time FROM events ORDER BY n LIMIT 1").fetchone()
        return StoreStats(rows, self.size_bytes(), int(oldest[0]) if oldest else 0)

    def trim(self, older_than_ns: int | None, max_rows: int | None, chunk: int = 10_000) -> int:
        """Delete at most `chunk` of the oldest rows (insertion order) that are past retention; rows deleted."""
        first = self.execute("SELECT n, published_ns FROM events ORDER BY n LIMIT 1").fetchone()
        if first is None:
            return 0
        deleted = 0
        with self.transaction():
            if max_rows:
                last = int(self.execute("SELECT MAX(n) FROM events").fetchone()[0])
                cut = min(last - max_rows, int(first[0]) + chunk - 1)
                deleted += self.execute("DELETE FROM events WHERE n <= ?", (cut,)).rowcount if cut >= first[0] else 0
            if older_than_ns is not None and int(first[1]) < older_than_ns:
                deleted += self.execute(
                    "DELETE FROM events WHERE n < ? AND published_ns < ?", (int(first[0]) + chunk, older_than_ns)
                ).rowcount
        return max(0, deleted)

    def close(self) -> None:
        self.conn.close()


def select_sql(query: EventQuery) -> tuple[str, list[Any]]:
    """The SELECT for a query, with `?` placeholders: every value is a parameter, never SQL text."""
    where: list[str] = []
    params: list[Any] = []
    for column, values in (("ticker", query.tickers), ("kind", query.kinds), ("source", query.sources)):
        if values:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    for clause, value in (("time >= ?", query.since_ns), ("time < ?", query.until_ns), ("seq >= ?", query.seq_from),
                          ("seq <= ?", query.seq_to), ("epoch = ?", query.epoch), ("run = ?", query.run)):  # fmt: skip
        if value is not None:
            where.append(clause)
            params.append(value)
    keys = query.key_columns()
    if query.after is not None:
        where.append(f"({', '.join(keys)}) {'<' if query.newest_first else '>'} ({', '.join('?' * len(keys))})")
        params.extend(query.after)
    direction = "DESC" if query.newest_first else "ASC"
    text = f"SELECT {', '.join(COLUMNS)}, payload FROM events"
    if where:
        text += " WHERE " + " AND ".join(where)
    text += f" ORDER BY {', '.join(f'{k} {direction}' for k in keys)} LIMIT ? OFFSET ?"
    return text, [*params, query.limit, query.offset]


@functools.lru_cache(maxsize=8)
def insert_sql(rows: int) -> str:
    """The INSERT of `rows` rows, with `?` placeholders, skipping (run, id) already stored."""
    one = f"({', '.join('?' * len(INSERT_COLUMNS))})"
    values = ", ".join([one] * rows)
    return f"INSERT INTO events ({', '.join(INSERT_COLUMNS)}) VALUES {values} ON CONFLICT (run, id) DO NOTHING"
