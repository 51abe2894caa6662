"""A shard's SQLite store: incremental rows, durable position, one writer, bad stores moved aside."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tickmesh.config import Config, TickChannel
from tickmesh.schema import Bar, FairMarketValue, High, Record, Trade, worker_input_decoder
from workers import store as store_module
from workers.detectors import make_detector
from workers.snapshot import Changes, Cut, export_changes, snapshot
from workers.store import Chunk, Position, Store, StoreLocked, Unreadable, store_path
from workers.tick_rules import TickDetector

T0 = 1_767_225_600_000_000_000
S = 1_000_000_000


def written(store: Store) -> list[list[Position] | Exception]:
    """Wait for the writer to finish the job in progress; what it reported."""
    deadline = time.monotonic() + 10
    results: list[list[Position] | Exception] = []
    while store.busy and time.monotonic() < deadline:
        results += store.finished()
        time.sleep(0.002)
    return results


def save(store: Store, changes: Changes, streams: list[Position]) -> bool:
    """One checkpoint of these changes, its rows in one chunk; False if the last is still being written."""
    if not store.begin(changes.cleared):
        return False
    store.write(dict(changes.rows))
    store.commit(changes.header, streams)
    return True


def feed(det: TickDetector, tickers: str, n: int, t0: int) -> None:
    for i in range(n):
        for k, ticker in enumerate(tickers):
            det.process(Trade(ticker * 3, 100.0 + i + k, 10, t0 + i * S), i, 0, 0)


def test_only_changed_tickers_are_written_and_a_restore_sees_all(tmp_path: Path) -> None:
    path = store_path(str(tmp_path), "tick", 0)
    det = TickDetector(TickChannel())
    feed(det, "ABC", 5, T0)
    store = Store(path)
    assert store.load() is None
    first = export_changes(det)
    assert list(first.rows) == ["AAA", "BBB", "CCC"]  # in ticker order: the table's key order
    event = High("tick:high:AAA:1", "AAA", "tick", 1, T0, 101.0, 3, T0, T0)
    assert save(store, first, [Position(7, 14, [event])])
    assert not save(store, first, [Position(7, 15)])  # one checkpoint at a time
    assert written(store) == [[Position(7, 14, [event])]]
    feed(det, "B", 3, T0 + 10 * S)
    second = export_changes(det)
    assert list(second.rows) == ["BBB"]  # the others did not change
    save(store, second, [Position(7, 17)])
    assert written(store) == [[Position(7, 17)]]
    store.close()

    again = Store(path)
    saved = again.load()
    assert saved is not None and saved.streams == [Position(7, 17)]
    restored = TickDetector(TickChannel())
    restored.restore_rows(saved.header, saved.rows)
    assert sorted(restored.tickers()) == ["AAA", "BBB", "CCC"]
    more = [Trade(t, 120.0 + i, 10, T0 + (20 + i) * S) for i in range(30) for t in ("AAA", "BBB", "CCC")]
    assert [restored.process(tr, 0, 0, 0) for tr in more] == [det.process(tr, 0, 0, 0) for tr in more]
    again.close()


def test_the_changed_rows_go_to_the_store_in_ticker_order() -> None:
    """The table's key order: the writer then sweeps its B-tree once (in hash order it took 10-45 % longer)."""
    det = TickDetector(TickChannel())
    tickers = [f"T{i:03d}" for i in range(200)]
    random.Random(1).shuffle(tickers)
    for ticker in tickers:
        det.process(Trade(ticker, 10.0, 10, T0), 0, 0, 0)
    assert list(export_changes(det).rows) == sorted(tickers)


def cut_record(name: str, ticker: str, i: int) -> Record:
    """Record i of a ticker on a channel: each one changes the ticker's row."""
    if name == "tick":
        return Trade(ticker, 100.0 + i * 7 % 11, 10, T0 + i * S)
    if name == "ohlcv":
        return Bar(ticker, 100.0, 102.0, 99.0, 100.5 + i % 5 / 10, 1_000.0 + i, T0 + i * 60 * S, T0 + (i + 1) * 60 * S)
    return FairMarketValue(ticker, 95.0 if i % 2 else 105.0, T0 + i * 3_600 * S, 100.0)  # an event each: a new row


@pytest.mark.parametrize("name", ["tick", "ohlcv", "fmv"])
def test_a_cut_keeps_each_row_as_it_was_at_the_cut_while_later_records_change_it(name: str) -> None:
    """A checkpoint is encoded a slice a turn (workers/shard.py): a ticker that trades before its
    slice must still be written as it stood at the cut, or a restore would apply that trade twice."""
    det: Any = make_detector(name, Config().channel(name))
    tickers = [f"C{k:03d}" for k in range(40)]
    for i in range(3):
        for ticker in tickers:
            det.process(cut_record(name, ticker, i), i, 0, 0)
    at_cut, header, cleared = {t: det.row(t) for t in sorted(det.dirty)}, det.header(), det.cleared
    chunks: list[dict[str, bytes | None]] = []
    cut = Cut(det, chunks.append, 5)
    assert not det.dirty and not det.cleared  # marks from here on are the next cut's
    later = [cut_record(name, t, i) for i in range(3, 5) for t in reversed(tickers)]  # the last slices' first
    later += [cut_record(name, "NEW", 3)]
    for k in range(0, len(later), 7):
        batch = later[k : k + 7]
        cut.before(batch)  # (the first batch's tickers are all still waiting: it saves their rows)
        for record in batch:
            det.process(record, 0, 0, 0)
        cut.step(3)
        assert len(cut.rows) < 5  # a full chunk goes at once: the cut holds less than one
    assert cut.step()  # (the rest, if any)
    assert cut.header == header and cut.cleared == cleared
    assert not cut.rows and all(len(chunk) < 5 + 7 for chunk in chunks)  # (a batch may overfill one)
    rows = {t: row for chunk in chunks for t, row in chunk.items()}
    assert sum(map(len, chunks)) == len(rows)  # each ticker handed on once
    assert rows == at_cut
    assert all(det.row(t) != at_cut[t] for t in tickers[-7:])  # (the records did change them)
    assert "NEW" in det.dirty and "NEW" not in rows


def test_an_abandoned_cut_gives_its_tickers_back_and_the_next_writes_them_as_they_are_then() -> None:
    det = TickDetector(TickChannel())
    feed(det, "ABC", 3, T0)
    det.cleared = True  # (as after a change of session start)
    chunks: list[dict[str, bytes | None]] = []
    cut = Cut(det, chunks.append, 1)
    cut.step(1)
    assert chunks == [{"AAA": det.row("AAA")}]  # (handed on: the store rolls it back with the cut)
    feed(det, "CD", 1, T0 + 10 * S)
    cut.abandon()  # (as before a new config)
    changes = export_changes(det)
    assert changes.cleared
    assert changes.rows == {t: det.row(t) for t in ("AAA", "BBB", "CCC", "DDD")}


def test_a_checkpoint_streamed_in_chunks_commits_whole_and_an_abandoned_one_changes_nothing(tmp_path: Path) -> None:
    path = store_path(str(tmp_path), "tick", 0)
    det = TickDetector(TickChannel())
    feed(det, "ABCDEFG", 2, T0)
    store = Store(path)
    assert store.begin(det.cleared)
    cut = Cut(det, store.write, 2)
    while not cut.step(1):
        pass
    store.commit(cut.header, [Position(3, 20)])
    assert written(store) == [[Position(3, 20)]]
    first = {t: det.row(t) for t in det.tickers()}

    feed(det, "ABX", 1, T0 + 60 * S)
    feed(det, "Y", 1, T0 + 60 * S)
    assert store.begin(det.cleared)
    cut = Cut(det, store.write, 2)
    cut.step(3)  # AAA, BBB (a chunk, written) and XXX
    cut.abandon()  # (a new config)
    store.abandon()
    assert written(store) == [] and not store.busy  # nothing to acknowledge, and the next may begin
    store.close()

    store = Store(path)
    saved = store.load()
    assert saved is not None and saved.streams == [Position(3, 20)]
    assert dict(saved.rows) == first  # the abandoned rows rolled back: no XXX, the old AAA and BBB
    assert save(store, export_changes(det), [Position(3, 24)])  # the next writes them as they are now
    assert written(store) == [[Position(3, 24)]]
    store.close()
    saved = Store(path).load()
    assert saved is not None and dict(saved.rows) == {t: det.row(t) for t in det.tickers()}


def test_a_chunk_packs_its_rows_and_keeps_none_of_them_alive() -> None:
    """What waits for the writer is one buffer, not a small object per row (they fragmented the
    interpreter's pools among the detector's states): the caller's rows go when its dict does."""
    a, b = b"a" * 138, bytes(range(200))
    rows = {"AAA": a, "GONE": None, "BBB": b, "EMPTY": b""}
    before = sys.getrefcount(a), sys.getrefcount(b)
    chunk = Chunk(rows)
    assert (sys.getrefcount(a), sys.getrefcount(b)) == before
    assert len(chunk) == 4
    for _ in range(2):  # the writer goes over it twice (deletes, then upserts)
        assert [(t, None if row is None else bytes(row)) for t, row in chunk] == list(rows.items())
    big = {"AAA": b"x" * 1_500, "GONE": None}  # malloc's, not the pools': kept as they are, not copied
    assert list(Chunk(big)) == list(big.items()) and len(Chunk(big)) == 2


def test_a_failed_write_fails_its_checkpoint_whole_and_the_next_one_is_written(tmp_path: Path) -> None:
    path = store_path(str(tmp_path), "tick", 0)
    det = TickDetector(TickChannel())
    feed(det, "AB", 2, T0)
    store = Store(path)
    assert save(store, export_changes(det), [Position(1, 5)])
    written(store)
    feed(det, "ABC", 1, T0 + 60 * S)
    changes = export_changes(det)
    assert store.begin(False)
    store.write({"AAA": changes.rows["AAA"]})
    store.write({object(): b"x"})  # type: ignore[dict-item]  # a key SQLite cannot bind: the write fails
    store.write({"CCC": changes.rows["CCC"]})  # (skipped: its transaction is rolled back)
    store.commit(changes.header, [Position(1, 9)])
    (failure,) = written(store)
    assert isinstance(failure, sqlite3.Error)
    assert save(store, changes, [Position(1, 9)])
    assert written(store) == [[Position(1, 9)]]
    store.close()
    saved = Store(path).load()
    assert saved is not None and saved.streams == [Position(1, 9)] and dict(saved.rows) == changes.rows


_KILLED_MID_CHECKPOINT = """
import os, signal, sys, time
from pathlib import Path
from workers.store import Store
path = Path(sys.argv[1])
wal = Path(f"{path}-wal")
store = Store(path)
assert store.begin(False)
# 30 MB, far beyond SQLite's page cache: the writer spills the uncommitted rows into the WAL
store.write({"AAA": b"new", **{f"T{i:05d}": b"x" * 1500 for i in range(20_000)}})
deadline = time.monotonic() + 30
while not (wal.exists() and wal.stat().st_size > 20_000 * 1500):
    if time.monotonic() > deadline:
        sys.exit("the rows never reached the WAL")
    time.sleep(0.01)
os.kill(os.getpid(), signal.SIGKILL)  # before the commit
"""


def test_a_checkpoint_killed_before_its_commit_leaves_the_last_committed_one(tmp_path: Path) -> None:
    path = store_path(str(tmp_path), "tick", 0)
    store = Store(path)
    assert store.begin(False)
    store.write({"AAA": b"old", "BBB": b"kept"})
    store.commit(b"header", [Position(2, 7)])
    assert written(store) == [[Position(2, 7)]]
    store.close()
    child = subprocess.run([sys.executable, "-c", _KILLED_MID_CHECKPOINT, str(path)], timeout=60, check=False)
    assert child.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").stat().st_size > 20_000 * 1500  # (its uncommitted rows did reach the WAL)
    saved = Store(path).load()
    assert saved is not None and saved.streams == [Position(2, 7)]
    assert dict(saved.rows) == {"AAA": b"old", "BBB": b"kept"}


def test_each_router_s_stream_position_is_kept_and_one_router_s_store_reads_as_router_0(tmp_path: Path) -> None:
    path = store_path(str(tmp_path), "tick", 0)
    changes = export_changes(TickDetector(TickChannel()))
    event = High("tick:high:AAA:1", "AAA", "tick", 1, T0, 101.0, 3, T0, T0)
    store = Store(path)
    save(store, changes, [Position(5, 9)])  # one router: the layout of a store from before routers
    written(store)
    store.close()
    store = Store(path)
    saved = store.load()
    assert saved is not None and saved.streams == [Position(5, 9)]
    save(store, changes, [Position(5, 12), Position(), Position(8, 3, [event])])  # three routers
    written(store)
    store.close()
    store = Store(path)
    saved = store.load()
    assert saved is not None and saved.streams == [Position(5, 12), Position(), Position(8, 3, [event])]
    store.close()


def test_a_second_instance_cannot_open_the_same_store(tmp_path: Path) -> None:
    path = store_path(str(tmp_path), "tick", 0)
    first = Store(path)
    with pytest.raises(StoreLocked, match="in use"):
        Store(path)
    first.close()
    Store(path).close()  # free again once the holder is gone


@pytest.mark.parametrize("content", [b"garbage, not sqlite", b"SQLite format 3\x00" + b"\x00" * 50])
def test_an_unreadable_store_is_refused_and_moved_aside(tmp_path: Path, content: bytes) -> None:
    path = store_path(str(tmp_path), "ohlcv", 1)
    path.write_bytes(content)
    store = Store(path)
    with pytest.raises(Unreadable):
        store.load()
    aside = store.move_aside()
    assert aside.read_bytes() == content and not path.exists()
    assert store.load() is None
    store.close()


def test_a_store_of_another_schema_is_unreadable(tmp_path: Path) -> None:
    path = store_path(str(tmp_path), "fmv", 0)
    store = Store(path)
    save(store, export_changes(TickDetector(TickChannel())), [Position(1, 0)])
    written(store)
    store.close()
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET v = 99 WHERE k = 'schema'")
    store = Store(path)
    with pytest.raises(Unreadable, match="schema 99"):
        store.load()
    store.close()


def test_a_checkpoint_of_many_rows_gives_their_memory_back_once_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its copy of every changed row would otherwise stay in the process's RSS (the high-water mark of
    a checkpoint): docs/benchmarks.md has the worker's RSS per symbol with and without."""
    releases: list[int] = []
    monkeypatch.setattr(store_module, "release_memory", lambda: releases.append(len(releases)))
    det = TickDetector(TickChannel())
    store = Store(store_path(str(tmp_path), "tick", 0))
    feed(det, "AB", 1, T0)
    save(store, export_changes(det), [Position(1, 2)])
    assert written(store) == [[Position(1, 2)]] and releases == []  # a few rows: nothing to give back
    for i in range(store_module.RELEASE_ROWS):
        det.process(Trade(f"M{i}", 10.0, 1, T0), i, 0, 0)
    save(store, export_changes(det), [Position(1, 3)])
    assert written(store) == [[Position(1, 3)]]
    store.close()
    assert releases == [0]


# a record of each channel that changes its detector's state (the FMV one is a deviation), and
# where its times are
MOVING: dict[str, tuple[list[Any], list[int]]] = {
    "tick": (["T", "", 100.0, 10, T0], [4]),
    "ohlcv": (["B", "", 100.0, 101.0, 99.0, 101.0, 10, T0, T0 + 60 * S], [7, 8]),
    "fmv": (["F", "", 110.0, T0, 100.0], [3]),
}


@pytest.mark.parametrize("name", ["tick", "ohlcv", "fmv"])
def test_what_a_detector_keeps_by_ticker_holds_one_string_of_it(name: str) -> None:
    """Decoding makes a new string per record: the tickers touched since the last checkpoint, and
    the states' keys, are the process's one string of the ticker (tickmesh.schema.check_ticker),
    not a decoded record's copy kept alive until the checkpoint, or for good."""
    det: Any = make_detector(name, Config().channel(name))  # (its tables differ by channel)
    record, times = MOVING[name]
    record = [record[0], "".join(["SH", name.upper()]), *record[2:]]  # made at run time: not an interned literal
    for k in range(2):  # the second as a shard's next batch, after a checkpoint
        batch = msgspec.msgpack.encode(("batch", name, 0, 1, k, k, [0], [record]))
        det.process(worker_input_decoder.decode(batch).records[0], k, 0, 0)
        (touched,) = det.dirty
        export_changes(det)
        for i in times:
            record[i] += 3_600 * S
    (kept,) = det.last if name == "fmv" else det.states
    assert touched is kept
    restored: Any = make_detector(name, Config().channel(name))
    restored.restore(snapshot(det))
    (kept_again,) = restored.last if name == "fmv" else restored.states
    assert kept_again is kept  # restored rows are keyed by it too, checked:
    with pytest.raises(ValueError, match="snapshot"):
        restored.restore_rows(det.header(), [(f"{kept}\n", det.row(kept))])
