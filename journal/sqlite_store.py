"""The SQLite backend (stdlib sqlite3): WAL, synchronous=NORMAL, one transaction per batch."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from journal.migrations import SQLITE
from journal.store import INSERT_COLUMNS, ROWS_PER_INSERT, SqlStore, StoreError
from tickmesh.security import private_dirs

BUSY_TIMEOUT_MS = 5_000  # a reader and the writer wait this long for each other's locks
# The writer's tuning, measured at 300k rows (docs/benchmarks.md): each batch touches pages all over the
# id and ticker indexes, so a bigger page cache and rarer checkpoints (each rewrites and fsyncs those
# pages) took it from about 29k to 51k rows/s. The WAL file grows to about 80 MB between checkpoints.
WRITER_PRAGMAS = ("PRAGMA cache_size=-65536", "PRAGMA wal_autocheckpoint=20000", "PRAGMA journal_size_limit=67108864")


class SqliteStore(SqlStore):
    """A journal in one SQLite file; readers (queries) run beside the writer thanks to WAL."""

    backend = "sqlite"
    migrations = SQLITE

    def __init__(self, path: str | Path, *, create: bool) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"no journal at {self.path} (is tickmesh-journal running here? see docs/journal.md)")
        if create:
            private_dirs(self.path.parent)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1_000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for pragma in WRITER_PRAGMAS if create else ():
                conn.execute(pragma)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open journal {self.path}: {exc}") from None
        super().__init__(conn)
        parameters = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # 32,766 by default, 999 in old builds
        self.rows_per_insert = min(ROWS_PER_INSERT, parameters // len(INSERT_COLUMNS))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def size_bytes(self) -> int:
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)

    def has_table(self, name: str) -> bool:
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return found.fetchone() is not None
