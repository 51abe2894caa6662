"""The journal's writer thread: every store call runs there, so receiving and decoding overlap the database's work."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from journal.backends import open_store
from journal.store import Row, SqlStore
from tickmesh.config import Config

T = TypeVar("T")


@dataclass
class Batch:
    """One transaction: rows and the position they bring the run to; `inserted` is set once committed."""

    rows: list[Row]
    position: tuple[int, int]
    inserted: int = -1


class Writer:
    """One thread owns the store (its connection is made, used and closed there).

    sqlite3 and psycopg release the GIL while the database works, so the journal's main thread keeps
    receiving and decoding the next batch while this one commits. At most one job of batches is in
    flight; its batches commit in order, each with its position, so what `settle` reports committed is
    exactly what the database holds.
    """

    def __init__(self, run: str) -> None:
        self.run = run
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")
        self.store: SqlStore | None = None
        self.inflight: Future[Exception | None] | None = None
        self.batches: list[Batch] = []

    def call(self, work: Callable[[SqlStore], T]) -> T:
        """Run `work` on the store in the writer thread and wait for it (after any job in flight)."""
        return self.pool.submit(self._with_store, work).result()

    def _with_store(self, work: Callable[[SqlStore], T]) -> T:
        assert self.store is not None
        return work(self.store)

    def open(self, config: Config, env: Mapping[str, str]) -> tuple[tuple[int, int] | None, int, str]:
        """Open (create, migrate) the store: the run's committed position, the rows stored, the backend."""

        def opened() -> tuple[tuple[int, int] | None, int, str]:
            self.store = open_store(config, env, create=True)
            return self.store.position(self.run), self.store.stats().rows, self.store.backend

        return self.pool.submit(opened).result()

    @property
    def busy(self) -> bool:
        return self.inflight is not None

    def submit(self, batches: list[Batch]) -> None:
        assert self.inflight is None, "one job in flight at a time"
        self.batches = batches
        self.inflight = self.pool.submit(self._write, batches)

    def _write(self, batches: list[Batch]) -> Exception | None:
        assert self.store is not None
        for batch in batches:
            try:
                batch.inserted = self.store.write(batch.rows, batch.position, self.run)
            except Exception as exc:  # the database failed: the caller reopens and reads again from the ring
                return exc
        return None

    def settle(self, wait: bool) -> tuple[list[Batch], Exception | None]:
        """The batches of the finished job that committed, and the error that stopped it (if any); nothing
        while the job still runs (unless `wait`)."""
        if self.inflight is None or (not wait and not self.inflight.done()):
            return [], None
        error = self.inflight.result()
        done = [b for b in self.batches if b.inserted >= 0]
        self.inflight, self.batches = None, []
        return done, error

    def close_store(self) -> None:
        """Close the store in its thread (a failed connection may fail to close: it is gone either way)."""

        def close() -> None:
            store, self.store = self.store, None
            if store is not None:
                store.close()

        self.pool.submit(close).result()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)
