"""The aggregator's dedup memory on disk: every id published is kept, in few transactions."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from aggregator import memory
from aggregator.dedup import Deduplicator
from aggregator.memory import Memory
from tests.mesh import poll_until
from tickmesh.config import AggregatorConfig

EPOCH = 1_700_000_000_000_000_000


def test_ids_published_one_turn_at_a_time_go_to_disk_once_per_flush_interval_all_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 publishing turns a millisecond apart: every id is on disk after close, in a transaction per
    FLUSH_S at most (it was one per turn: a writer thread busy with the disk and the GIL all the time)."""
    transactions: list[str] = []
    connect = memory._connect

    def counting(path: Path) -> sqlite3.Connection:
        db = connect(path)
        db.set_trace_callback(lambda sql: transactions.append(sql) if sql.startswith("BEGIN") else None)
        return db

    monkeypatch.setattr(memory, "_connect", counting)
    mem = Memory(str(tmp_path), 10_000, EPOCH)
    start = time.monotonic()
    for i in range(300):
        mem.remember([f"tick:high:A:{i}"], i + 1)
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    mem.close()
    written = len(transactions)
    assert Memory(str(tmp_path), 10_000, EPOCH).load() == [f"tick:high:A:{i}" for i in range(300)]
    assert 1 <= written <= elapsed / memory.FLUSH_S + 2, f"{written} in {elapsed:.2f} s"


def test_a_memory_written_before_the_log_layout_loads_back_whole_and_in_order_after_the_upgrade(tmp_path: Path) -> None:
    """The layout before (table `ids`, a unique index) is copied into the log at the first start, once."""
    old = sqlite3.connect(tmp_path / "aggregator.db")
    old.execute("CREATE TABLE ids (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL)")
    old.executemany("INSERT INTO ids (id) VALUES (?)", [(f"tick:high:OLD:{i}",) for i in range(50)])
    old.commit()
    old.close()
    mem = Memory(str(tmp_path), 40, EPOCH)
    assert mem.load() == [f"tick:high:OLD:{i}" for i in range(10, 50)]  # the newest 40, oldest first
    mem.remember(["tick:high:NEW:0"], 1)
    mem.close()
    assert Memory(str(tmp_path), 1_000, EPOCH).load() == [f"tick:high:OLD:{i}" for i in range(50)] + ["tick:high:NEW:0"]
    tables = sqlite3.connect(tmp_path / "aggregator.db").execute("SELECT name FROM sqlite_master WHERE type='table'")
    assert "ids" not in {name for (name,) in tables}


def test_an_id_published_again_after_a_kill_9_is_remembered_once_and_the_log_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No unique index: a copy is written, and dropped where the ids are loaded; each write trims to the capacity."""
    monkeypatch.setattr(memory, "PRUNE_EVERY", 1)
    mem = Memory(str(tmp_path), 1_000, EPOCH)
    mem.remember(["tick:high:A:1", "tick:high:A:2"], 2)
    time.sleep(memory.FLUSH_S * 2)
    mem.remember(["tick:high:A:2", "tick:high:A:3"], 4)  # A:2 again: published in the 50 ms before a kill -9
    mem.close()
    dedup = Deduplicator(AggregatorConfig())
    dedup.preload(Memory(str(tmp_path), 1_000, EPOCH).load())
    assert list(dedup.order) == ["tick:high:A:1", "tick:high:A:2", "tick:high:A:3"]
    mem = Memory(str(tmp_path), 1_000, EPOCH)
    for turn in range(3):
        mem.remember([f"tick:high:B:{turn}:{i}" for i in range(1_000)], (turn + 1) * 1_000)
        time.sleep(memory.FLUSH_S * 2)  # one write, then one trim, per turn
    mem.close()
    with sqlite3.connect(tmp_path / "aggregator.db") as db:
        assert db.execute("SELECT COUNT(*) FROM published").fetchone()[0] == 1_000
    assert Memory(str(tmp_path), 1_000, EPOCH).load() == [f"tick:high:B:2:{i}" for i in range(1_000)]


def test_the_next_run_knows_where_each_epoch_before_it_ended_as_recorded(tmp_path: Path) -> None:
    """A run records its start (seq 0) at load and its last seq with each write; a new run reads the
    ends of the runs before it, newest first, those that published nothing among them."""
    first = Memory(str(tmp_path), 10, EPOCH)
    assert first.load() == [] and first.ended == []
    assert _recorded(tmp_path) == [(EPOCH, 0)]  # at once: killed before its first write, it is still known
    first.remember(["tick:high:A:1", "tick:high:A:2"], 2)
    poll_until(lambda: _recorded(tmp_path) == [(EPOCH, 2)], 5, what="the first write")
    first.remember(["tick:high:A:3"], 3)  # a later transaction of the same epoch: it replaces the end
    first.close()
    second = Memory(str(tmp_path), 10, EPOCH + 5)
    second.load()
    assert second.ended == [(EPOCH, 3)]
    second.close()  # published nothing: recorded as such
    third = Memory(str(tmp_path), 10, EPOCH + 9)
    third.load()
    assert third.ended == [(EPOCH + 5, 0), (EPOCH, 3)]
    third.remember(["tick:high:A:4"], 1)
    third.close()
    fourth = Memory(str(tmp_path), 10, EPOCH + 12)
    fourth.load()
    assert fourth.ended == [(EPOCH + 9, 1), (EPOCH + 5, 0), (EPOCH, 3)]


def test_the_ends_of_the_newest_epochs_are_kept(tmp_path: Path) -> None:
    for n in range(memory.EPOCHS_KEPT + 5):
        Memory(str(tmp_path), 10, EPOCH + n).load()
    latest = Memory(str(tmp_path), 10, EPOCH + 100)
    latest.load()
    assert latest.ended == [(EPOCH + n, 0) for n in range(memory.EPOCHS_KEPT + 4, 4, -1)][: memory.EPOCHS_KEPT]
    assert len(_recorded(tmp_path)) == memory.EPOCHS_KEPT


def _recorded(state_dir: Path) -> list[tuple[int, int]]:
    with contextlib.closing(sqlite3.connect(state_dir / "aggregator.db")) as db:
        return [(int(e), int(s)) for e, s in db.execute("SELECT epoch, last_seq FROM epochs")]
