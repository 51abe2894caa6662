"""The aggregator's dedup memory on disk: every id published is kept, in few transactions."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from aggregator import memory
from aggregator.memory import Memory


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
    mem = Memory(str(tmp_path), 10_000)
    start = time.monotonic()
    for i in range(300):
        mem.remember([f"tick:high:A:{i}"])
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    mem.close()
    assert Memory(str(tmp_path), 10_000).load() == [f"tick:high:A:{i}" for i in range(300)]
    assert 1 <= len(transactions) <= elapsed / memory.FLUSH_S + 2, f"{len(transactions)} in {elapsed:.2f} s"
