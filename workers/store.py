"""A shard's durable state in SQLite: detector rows per ticker, each stream's position, unconfirmed events.

One database per (channel, shard) in `state.dir`, WAL mode, `synchronous=FULL`
(a committed checkpoint survives a power cut). A checkpoint writes only the rows
of tickers changed since the last one, in a background thread with its own
connection, so the detection loop never waits on the disk. It is one
transaction, streamed: `begin`, the rows a chunk at a time as the loop encodes
them (`write`; `behind` says when the writer has enough in hand), then `commit`
with the stream positions, or `abandon` to roll it back. The loop learns of
each committed checkpoint from `finished()` and only then acknowledges it to the
router. There is one stream per router (`[router] count`): router 0's position
is kept under the meta keys `epoch`, `seq` and `events`, router i's under
`epoch.i`, `seq.i` and `events.i`, so a store written with one router reads back
unchanged. An exclusive lock file keeps a second instance of the same shard from
writing into the store. A store that cannot be read (corrupt, truncated, another
schema) is moved aside with a clear error and the shard starts fresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import queue
import sqlite3
import threading
import time
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from tickmesh.durable import move_aside
from tickmesh.runtime import release_memory
from tickmesh.schema import Event
from tickmesh.security import private_dirs
from workers.snapshot import Cut, Rows

log = logging.getLogger(__name__)

SCHEMA = 1  # the layout of the tables below; another number is moved aside
CHUNK_ROWS = 1_024  # rows handed to the writer at a time: a checkpoint holds a few such chunks at most
SMALL_ROW = 512  # bytes: rows of a chunk no bigger than this on average are packed (Chunk)
RELEASE_ROWS = 1_000  # a checkpoint of this many rows or more gives its memory back to the OS once ended
_events = msgspec.msgpack.Decoder(list[Event])
_encoder = msgspec.msgpack.Encoder()


class StoreLocked(RuntimeError):
    """Another process holds this shard's store."""


class Unreadable(ValueError):
    """The store exists but cannot be used (corrupt, foreign, another schema)."""


class Position(msgspec.Struct, frozen=True):
    """How far one router's stream is processed, and the events of it the router may still need."""

    epoch: int = -1
    seq: int = -1
    events: list[Event] = []


class Saved(msgspec.Struct, frozen=True):
    """What a shard resumes from: detector rows, and a Position per router (router 0 first)."""

    header: bytes
    rows: list[tuple[str, bytes]]
    streams: list[Position]


class Begin(msgspec.Struct, frozen=True):
    """Open a checkpoint's transaction; `cleared`: every earlier row is void."""

    cleared: bool


class Commit(msgspec.Struct, frozen=True):
    """Close it with the detector's header and each router's stream position (router 0 first)."""

    header: bytes
    streams: list[Position]


class Abandon(msgspec.Struct, frozen=True):
    """Roll it back."""


class Chunk:
    """Some of a checkpoint's rows. Small rows (the interpreter's own pools hold objects of up to
    512 bytes) are packed: their tickers, one buffer of every row and an array of their sizes (-1:
    the ticker has no state any more), not a bytes object per row. Rows wait in the writer's queue
    while the loop goes on creating detector states; as small objects of their own they sat in those
    pools among the states and, once written and freed, left them part-empty (about 80 bytes per
    warm OHLCV symbol at rest, docs/benchmarks.md). Bigger rows (tick's) come from malloc, so they
    are kept as they are: packing them would only copy them."""

    __slots__ = ("buf", "rows", "sizes", "tickers")

    def __init__(self, rows: Mapping[str, bytes | None]) -> None:
        self.rows: Mapping[str, bytes | None] | None = None
        self.tickers: list[str] = []
        self.sizes = array("q")
        self.buf = b""
        if sum(len(row) for row in rows.values() if row is not None) > SMALL_ROW * len(rows):
            self.rows = rows
            return
        self.tickers = list(rows)
        self.sizes.extend(-1 if row is None else len(row) for row in rows.values())
        self.buf = b"".join(row for row in rows.values() if row is not None)

    def __len__(self) -> int:
        return len(self.tickers) if self.rows is None else len(self.rows)

    def __iter__(self) -> Iterator[tuple[str, bytes | memoryview | None]]:
        if self.rows is not None:
            yield from self.rows.items()
            return
        at, buf = 0, memoryview(self.buf)  # views, not copies: SQLite copies what it binds
        for ticker, size in zip(self.tickers, self.sizes, strict=True):
            if size < 0:
                yield ticker, None
            else:
                yield ticker, buf[at : at + size]
                at += size


Work = Begin | Chunk | Commit | Abandon


def store_path(folder: str, channel: str, shard: int) -> Path:
    return Path(folder) / f"{channel}-{shard}.db"


class Store:
    """Open (and lock) a shard's store; `load` it once, then write checkpoints (`begin`, `write`, `commit`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dirs(path.parent)
        self._lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreLocked(f"{path} is in use by another process (is this shard running twice?)") from None
        self._jobs: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[list[Position] | Exception | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.busy = False

    # -- start --------------------------------------------------------------------------
    def load(self) -> Saved | None:
        """The last checkpoint, None if there is none; Unreadable if there is one that cannot be used."""
        if not self.path.exists():
            return None
        try:
            with contextlib.closing(_connect(self.path)) as db:
                meta = dict(db.execute("SELECT k, v FROM meta"))
                if meta.get("schema") != SCHEMA:
                    raise Unreadable(f"schema {meta.get('schema')!r}, expected {SCHEMA}")
                rows = [(str(t), bytes(r)) for t, r in db.execute("SELECT ticker, state FROM rows")]
                return Saved(bytes(meta["header"]), rows, _positions(meta))
        except (sqlite3.Error, KeyError, ValueError, TypeError, msgspec.DecodeError) as exc:
            raise Unreadable(f"{self.path}: {exc}") from None

    def move_aside(self) -> Path:
        """Rename the store (and its WAL) out of the way; where it went."""
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)  # a WAL without its database is useless
        return move_aside(self.path)

    # -- checkpoints ----------------------------------------------------------------------
    def begin(self, cleared: bool) -> bool:
        """Open a checkpoint; False (nothing opened) while the last one is still being written."""
        if self.busy:
            return False
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_all, name=f"store {self.path.name}", daemon=True)
            self._thread.start()
        self.busy = True
        self._jobs.put(Begin(cleared))
        return True

    def write(self, rows: Mapping[str, bytes | None]) -> None:
        """Hand the open checkpoint some of its rows: small ones packed here (the caller's row objects can
        go at once), bigger ones kept in the caller's dict, which the store owns from here."""
        self._jobs.put(Chunk(rows))

    def commit(self, header: bytes, streams: list[Position]) -> None:
        """Close the open checkpoint: `finished` yields `streams` once it is durable."""
        self._jobs.put(Commit(header, streams))

    def abandon(self) -> None:
        """Roll the open checkpoint back (`finished` yields nothing for it)."""
        self._jobs.put(Abandon())

    def checkpoint(self, detector: Rows, streams: list[Position]) -> bool:
        """A whole checkpoint of what changed, at once (a shard's last one; tools), paced by the writer;
        False (nothing done) while the last one is still being written."""
        if not self.begin(detector.cleared):
            return False
        cut = Cut(detector, self.write, CHUNK_ROWS)
        while not cut.step(CHUNK_ROWS):
            while self.behind:
                time.sleep(0.001)
        self.commit(cut.header, streams)
        return True

    @property
    def behind(self) -> bool:
        """The writer has work queued beyond what it is writing: hold the next rows back for now."""
        return self._jobs.qsize() >= 2

    def finished(self) -> Iterator[list[Position] | Exception]:
        """The stream positions of each checkpoint made durable since the last call, or the error that stopped it."""
        while True:
            try:
                result = self._done.get_nowait()
            except queue.Empty:
                return
            self.busy = False
            if result is not None:  # (None: an abandoned one, rolled back)
                yield result

    def close(self, timeout_s: float = 3.0) -> None:
        """Finish the work queued (up to `timeout_s`), then release the store."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout_s)
        self._lock.close()

    def _write_all(self) -> None:
        db: sqlite3.Connection | None = None
        failed: Exception | None = None  # what stopped the open checkpoint: the rest of its work is skipped
        written = 0  # rows of the open checkpoint
        while (work := self._jobs.get()) is not None:
            if isinstance(work, Begin):
                failed, written = None, 0
            if failed is None:
                try:
                    db = db or _open(self.path)
                    written += _apply(db, work)
                except Exception as exc:  # the writer must not die: the checkpoint fails, and says why
                    failed = exc
                    _roll_back(db)
            if isinstance(work, Commit | Abandon):
                self._done.put((failed or work.streams) if isinstance(work, Commit) else None)
                if written >= RELEASE_ROWS:  # its rows are garbage now: give their pages back
                    release_memory()
        if db is not None:
            db.close()


def _open(path: Path) -> sqlite3.Connection:
    db = _connect(path)
    try:
        _create(db)
    except sqlite3.Error:
        db.close()
        raise
    return db


def _apply(db: sqlite3.Connection, work: Work) -> int:
    """Do one piece of a checkpoint's work in its transaction; how many rows it wrote."""
    if isinstance(work, Begin):
        db.execute("BEGIN")
        if work.cleared:
            db.execute("DELETE FROM rows")
        return 0
    if isinstance(work, Abandon):
        _roll_back(db)
        return 0
    if isinstance(work, Commit):
        meta: dict[str, object] = {"header": work.header}
        for router, position in enumerate(work.streams):
            suffix = f".{router}" if router else ""
            meta[f"epoch{suffix}"], meta[f"seq{suffix}"] = position.epoch, position.seq
            meta[f"events{suffix}"] = _encoder.encode(position.events)
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        db.execute("COMMIT")
        return 0
    # generators, not lists: one parameter tuple at a time (a list of them all would be freed between
    # the state's own allocations, and stay in the process's memory as holes)
    db.executemany("DELETE FROM rows WHERE ticker = ?", ((t,) for t, row in work if row is None))
    db.executemany(  # an upsert changes the row in place, where REPLACE deletes it and inserts it again
        "INSERT INTO rows VALUES (?, ?) ON CONFLICT (ticker) DO UPDATE SET state = excluded.state",
        ((t, row) for t, row in work if row is not None),
    )
    return len(work)


def _roll_back(db: sqlite3.Connection | None) -> None:
    if db is not None and db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def _create(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v)")
    db.execute("CREATE TABLE IF NOT EXISTS rows (ticker TEXT PRIMARY KEY, state BLOB NOT NULL)")
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA,))


def _positions(meta: dict[str, Any]) -> list[Position]:
    """Each router's Position from the meta table (router 0's keys have no suffix; one missing: fresh)."""
    routers = [0] + sorted(int(k[len("seq.") :]) for k in meta if k.startswith("seq.") and k[4:].isdigit())
    out = [Position()] * (routers[-1] + 1)
    for router in routers:
        suffix = f".{router}" if router else ""
        epoch, seq = meta[f"epoch{suffix}"], meta[f"seq{suffix}"]
        out[router] = Position(int(epoch), int(seq), _events.decode(meta[f"events{suffix}"]))
    return out
