"""The aggregator's dedup memory on disk: the ids it published, so a restart never publishes them again.

After a kill -9 of workers or a whole-mesh restart, workers resend the events of
records the router may resend (their checkpoints keep them); the aggregator
drops those it already published only if it remembers them. The ids go to SQLite
in `state.dir/aggregator.db` (WAL) from a background thread every FLUSH_S, so the
publishing loop never waits on the disk; at start the newest `dedup_capacity` are
loaded back. What was published in the last FLUSH_S before a kill -9 may be
published again (with the same id: subscribers can drop it). An unreadable
database is moved aside and the memory starts empty.

The table is a log, appended in publishing order: no index on the id, because
the aggregator admits an id once per life and `Deduplicator.preload` drops the
rare copy (an id published again after a kill -9). A unique index made each id
cost 3.5 times as much to write. A database from before (table `ids`, unique)
is copied into the log once, at the first start.

Each transaction also records the epoch's last published seq (table `epochs`;
seq 0 is written at the epoch's start, so an epoch that publishes nothing, or
is killed before its first write, is recorded too), so the next epoch can say
where each epoch before it ended (`ended`, in every replay reply): a follower
that stopped short of one counts the rest as lost, however many restarts it
slept through.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path

from tickmesh.durable import move_aside
from tickmesh.schema import EPOCHS_KEPT
from tickmesh.security import private_dirs

log = logging.getLogger(__name__)

FLUSH_S = 0.05
PRUNE_EVERY = 200  # writes between trims of the table to the capacity


class Memory:
    def __init__(self, state_dir: str, capacity: int, epoch: int) -> None:
        self.path = Path(state_dir) / "aggregator.db"
        self.capacity, self.epoch = capacity, epoch
        self.moved_aside = 0
        self.ended: list[tuple[int, int]] = []  # (epoch, last seq) of the runs before, newest first, as load found them
        self._ids: queue.SimpleQueue[tuple[list[str], int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def load(self) -> list[str]:
        """The newest `capacity` ids remembered, oldest first; sets `ended`, and records this epoch's start."""
        private_dirs(self.path.parent)
        try:
            db = _connect(self.path)
            try:
                rows = db.execute("SELECT id FROM published ORDER BY n DESC LIMIT ?", (self.capacity,)).fetchall()
                ends = db.execute(
                    "SELECT epoch, last_seq FROM epochs WHERE epoch < ? ORDER BY epoch DESC LIMIT ?",
                    (self.epoch, EPOCHS_KEPT),
                ).fetchall()
                self.ended = [(int(epoch), int(seq)) for epoch, seq in ends]
                with db:
                    db.execute("INSERT OR IGNORE INTO epochs (epoch, last_seq) VALUES (?, 0)", (self.epoch,))
                    _prune_epochs(db)
            finally:
                db.close()
        except sqlite3.Error as exc:
            self.moved_aside += 1
            log.error("dedup memory %s unreadable (%s); moved aside to %s", self.path, exc, _aside(self.path))
            return []
        return [str(r[0]) for r in reversed(rows)]

    def remember(self, ids: list[str], seq: int) -> None:
        """Keep `ids`, just published; `seq` is the epoch's last seq with them."""
        if not ids:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_all, name="dedup memory", daemon=True)
            self._thread.start()
        self._ids.put((ids, seq))

    def close(self, timeout_s: float = 2.0) -> None:
        if self._thread is not None:
            self._ids.put(None)
            self._thread.join(timeout_s)

    def _write_all(self) -> None:
        """One transaction for every id queued, then FLUSH_S for more to gather (until `close`).

        Not one per publishing turn: at 10,000 records/s that was ~340 transactions a second, a
        writer thread taking a quarter of the aggregator's CPU and the GIL from its loop.
        """
        db = _connect(self.path)
        writes, done = 0, False
        try:
            while not done:
                batch, seq, done = self._take()
                if batch:
                    with db:
                        db.executemany("INSERT INTO published (id) VALUES (?)", [(i,) for i in batch])
                        db.execute("INSERT OR REPLACE INTO epochs (epoch, last_seq) VALUES (?, ?)", (self.epoch, seq))
                    writes += 1
                    if writes % PRUNE_EVERY == 0:
                        with db:
                            db.execute(
                                "DELETE FROM published WHERE n <= (SELECT MAX(n) FROM published) - ?", (self.capacity,)
                            )
                            _prune_epochs(db)
                if not done:
                    time.sleep(FLUSH_S)
        except sqlite3.Error as exc:
            log.error("dedup memory not written: %s", exc)
        finally:
            db.close()

    def _take(self) -> tuple[list[str], int, bool]:
        """Wait for ids; then every id queued, the last seq with them, and whether `close` asked to stop."""
        batch: list[str] = []
        seq = 0
        item = self._ids.get()
        try:
            while item is not None:
                batch += item[0]
                seq = item[1]
                item = self._ids.get_nowait()
        except queue.Empty:
            return batch, seq, False
        return batch, seq, True


def _prune_epochs(db: sqlite3.Connection) -> None:
    """Keep the newest EPOCHS_KEPT epochs' ends (this one's among them)."""
    db.execute(
        "DELETE FROM epochs WHERE epoch NOT IN (SELECT epoch FROM epochs ORDER BY epoch DESC LIMIT ?)", (EPOCHS_KEPT,)
    )


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    with db:  # n: the rowid, so appending is one B-tree insert at its right edge
        db.execute("CREATE TABLE IF NOT EXISTS published (n INTEGER PRIMARY KEY, id TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS epochs (epoch INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL)")
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ids'").fetchone():
            db.execute("INSERT INTO published (id) SELECT id FROM ids ORDER BY n")  # the layout before
            db.execute("DROP TABLE ids")
    return db


def _aside(path: Path) -> Path:
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return move_aside(path)
