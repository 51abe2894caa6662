"""The journal store, the same tests on SQLite and a real PostgreSQL: writes, position, queries, paging, retention."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from journal.backends import open_store
from journal.query import QueryError, build_query
from journal.store import SqlStore, row_of
from tests.conftest import JournalBackend
from tickmesh.config import Config, JournalConfig
from tickmesh.schema import BigMove, High, Publication

S = 1_000_000_000
T0 = 1_795_000_000 * S  # 2026-11-18


def publication(seq: int, ticker: str = "AAPL", kind: str = "high", at: int = 0, epoch: int = 7) -> Publication:
    time_ns = T0 + (at or seq) * S
    if kind == "high":
        event: High | BigMove = High(f"tick:high:{ticker}:{time_ns}", ticker, "tick", 1, time_ns, 100.0 + seq, seq,
                                     time_ns, time_ns, previous=99.0, count=seq)  # fmt: skip
    else:
        event = BigMove(f"ohlcv:big_move:{ticker}:{time_ns}", ticker, "ohlcv", 2, time_ns, 50.0, seq, time_ns,
                        time_ns, direction="up", pct=2.5)  # fmt: skip
    return Publication(seq, epoch, time_ns + 1_000, event)


def config_for(backend: JournalBackend) -> Config:
    return Config(journal=msgspec.convert(backend.settings, JournalConfig))


@pytest.fixture
def store(journal_backend: JournalBackend) -> Iterator[SqlStore]:
    opened = open_store(config_for(journal_backend), journal_backend.env, create=True)
    yield opened
    opened.close()


def write(store: SqlStore, pubs: list[Publication], run: str = "") -> int:
    return store.write([row_of(p, run, p.published_ns) for p in pubs], (pubs[-1].epoch, pubs[-1].seq), run)


def test_rows_and_position_are_stored_together_and_an_id_is_stored_once(store: SqlStore) -> None:
    assert store.position() is None
    pubs = [publication(i) for i in range(1, 11)]
    assert write(store, pubs) == 10
    assert store.position() == (7, 10)
    assert write(store, pubs[5:] + [publication(11)]) == 1  # re-delivered: only the new one counts
    assert store.position() == (7, 11)
    assert store.stats().rows == 11
    stored = store.query(build_query(limit=100))
    assert [r.seq for r in stored] == list(range(1, 12))
    assert stored[0].publication() == pubs[0]  # the whole event comes back


def test_a_batch_spans_several_insert_statements_and_each_id_is_counted_once(store: SqlStore) -> None:
    store.rows_per_insert = 3  # SQLite: 3 rows per INSERT (PostgreSQL COPYs the batch whatever this says)
    pubs = [publication(i) for i in range(1, 9)]
    assert write(store, pubs[:4]) == 4
    # statements (2, 5, 5), (3, 6, 7), (6, 8): 2 and 3 stored already, 5 twice in one statement, 6 in two
    assert write(store, [pubs[1], pubs[4], pubs[4], pubs[2], pubs[5], pubs[6], pubs[5], pubs[7]]) == 4
    assert [r.seq for r in store.query(build_query(limit=100))] == list(range(1, 9))
    assert store.position() == (7, 8)


def test_migrations_are_recorded_and_reopening_applies_nothing(journal_backend: JournalBackend) -> None:
    first = open_store(config_for(journal_backend), journal_backend.env, create=True)
    write(first, [publication(1)])
    first.close()
    again = open_store(config_for(journal_backend), journal_backend.env, create=False)
    assert again.version() == len(again.migrations)
    assert again.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(again.migrations)
    assert again.stats().rows == 1
    again.close()


def test_each_run_keeps_its_position_and_a_version_1_position_goes_to_its_run(
    journal_backend: JournalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from journal.postgres_store import PostgresStore
    from journal.sqlite_store import SqliteStore

    cls = SqliteStore if journal_backend.name == "sqlite" else PostgresStore
    monkeypatch.setattr(cls, "migrations", cls.migrations[:1])  # a journal written by version 1
    old = open_store(config_for(journal_backend), journal_backend.env, create=True)
    with old.transaction():
        old.execute("INSERT INTO journal_position (one, epoch, seq, updated_ns) VALUES (1, 7, 10, 0)")
        old.insert_rows([row_of(publication(10), "tagged", 0)])
    old.close()
    monkeypatch.undo()
    store = open_store(config_for(journal_backend), journal_backend.env, create=True)  # migrates to 2
    try:
        assert store.version() == 2 and store.position("tagged") == (7, 10) and store.position() is None
        write(store, [publication(11)])
        write(store, [publication(1, epoch=3)], run="backtest")
        assert (store.position(), store.position("tagged"), store.position("backtest")) == ((7, 11), (7, 10), (3, 1))
        assert store.has_run("backtest") and store.kinds("backtest") == {"high": 1}
        assert (
            store.delete_run("backtest") == 1 and not store.has_run("backtest") and store.position("backtest") is None
        )
    finally:
        store.close()


def test_filters_order_and_paging(store: SqlStore) -> None:
    pubs = [publication(i, ticker="AAPL" if i % 2 else "MSFT", kind="high" if i % 3 else "big_move")
            for i in range(1, 61)]  # fmt: skip
    write(store, pubs)
    aapl_highs = store.query(build_query(tickers=["AAPL"], kinds=["high"], limit=1_000))
    assert {r.ticker for r in aapl_highs} == {"AAPL"} and {r.kind for r in aapl_highs} == {"high"}
    assert [r.seq for r in aapl_highs] == [i for i in range(1, 61) if i % 2 and i % 3]
    window = store.query(build_query(since=str(T0 + 10 * S), until=str(T0 + 20 * S), limit=1_000))
    assert [r.seq for r in window] == list(range(10, 20))
    newest = store.query(build_query(sources=["ohlcv"], newest_first=True, limit=3))
    assert [r.seq for r in newest] == [60, 57, 54]
    assert [r.seq for r in store.query(build_query(seq_from=5, seq_to=7))] == [5, 6, 7]
    # pages by token cover everything once, in order; an offset skips
    query = build_query(limit=7)
    seen, token = [], ""
    while True:
        page = store.query(build_query(limit=7, page_token=token or None))
        seen += [r.seq for r in page]
        token = store.next_token(query, page)
        if not token:
            break
    assert seen == list(range(1, 61))
    assert [r.seq for r in store.query(build_query(limit=2, offset=58))] == [59, 60]
    assert [r.seq for r in store.pages(build_query(order="published", limit=9, newest_first=True))] == list(
        range(60, 0, -1)
    )


def test_runs_tag_rows_and_each_run_keeps_its_own_copy_of_an_event(store: SqlStore) -> None:
    write(store, [publication(1), publication(2)], run="baseline")
    write(store, [publication(3)])
    assert write(store, [publication(1), publication(2)], run="other") == 2  # same ids, another run: kept
    assert write(store, [publication(1)], run="other") == 0  # within a run: once
    assert [r.seq for r in store.query(build_query(run="baseline"))] == [1, 2]
    assert [r.seq for r in store.query(build_query(run=""))] == [3]
    assert store.query(build_query(run="baseline"))[0].run == "baseline"
    assert [r.seq for r in store.query(build_query(run="other"))] == [1, 2]


def test_sql_metacharacters_are_refused_or_only_ever_parameters(store: SqlStore) -> None:
    write(store, [publication(1)])
    for bad in ("AAPL'; DROP TABLE events; --", "A OR 1=1", "x\x00", "' OR ''='"):
        with pytest.raises(QueryError, match="unknown ticker"):
            build_query(tickers=[bad])
    with pytest.raises(QueryError, match="run"):
        build_query(run="a' OR 'a'='a")
    assert store.query(build_query(tickers=["A.B:C-D"])) == []  # every legal character, as a parameter
    assert store.stats().rows == 1


def test_retention_by_rows_and_by_age(store: SqlStore) -> None:
    write(store, [publication(i) for i in range(1, 101)])
    while store.trim(None, 30, chunk=25):
        pass
    assert [r.seq for r in store.query(build_query(limit=1_000))] == list(range(71, 101))
    cutoff = publication(91).published_ns  # rows published before seq 91's time
    while store.trim(cutoff, None, chunk=4):
        pass
    assert store.stats().rows == 10
    assert store.stats().oldest_time_ns == publication(91).event.time
    assert store.stats().bytes > 0
