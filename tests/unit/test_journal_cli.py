"""tickmesh-events on both backends: query output forms, paging, diff of two runs, and bad input refused clearly."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import msgspec
import pytest

from journal.backends import open_store
from journal.cli import main
from tests.conftest import JournalBackend
from tests.unit.test_journal_store import T0, S, config_for, publication, write
from tickmesh.config import to_toml
from tickmesh.schema import Publication


@pytest.fixture
def config_file(journal_backend: JournalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A config naming the backend (its DSN in the environment), with a journal holding two runs."""
    for key, value in journal_backend.env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "tickmesh.toml"
    path.write_text(to_toml({"journal": journal_backend.settings}))
    store = open_store(config_for(journal_backend), journal_backend.env, create=True)
    write(store, [publication(i, ticker="AAPL" if i % 2 else "MSFT") for i in range(1, 21)], run="a")
    # run b: the same events but seq 3 missing, and one of its own, in a later epoch
    write(store, [_rerun(publication(i, ticker="AAPL" if i % 2 else "MSFT")) for i in range(1, 21) if i != 3], run="b")
    write(store, [_rerun(publication(40, ticker="NVDA"))], run="b")
    store.close()
    return str(path)


def _rerun(p: Publication) -> Publication:
    """The same event as another run publishes it: the same id, a later aggregator epoch."""
    return msgspec.structs.replace(p, epoch=8)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_query_json_csv_and_table(
    config_file: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "--config", config_file, "query", "--ticker", "AAPL", "--run", "a", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [x["seq"] for x in lines] == list(range(1, 21, 2))
    assert {x["kind"] for x in lines} == {"high"} and lines[0]["previous"] == 99.0 and lines[0]["run"] == "a"
    code, out, _ = run(capsys, "--config", config_file, "query", "--since=-1d", "--until", "now", "--csv")
    assert code == 0 and list(csv.DictReader(io.StringIO(out))) == []  # the data is from 2026-11-18
    since = str(T0 + 5 * S)
    code, out, _ = run(capsys, "--config", config_file, "query", "--since", since, "--run", "a", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [int(r["seq"]) for r in rows] == list(range(5, 21)) and rows[0]["ticker"] == "AAPL"
    monkeypatch.setenv("COLUMNS", "200")  # rich sizes tables to the terminal
    code, out, _ = run(capsys, "--config", config_file, "query", "--kind", "high", "--newest-first", "--limit", "3")
    assert code == 0 and "NVDA" in out and "previous=99" in out


def test_query_to_parquet_reads_back_with_pyarrow(
    config_file: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    out_file = tmp_path / "events.parquet"
    code, out, err = run(capsys, "--config", config_file, "query", "--run", "b", "--parquet", str(out_file))
    assert code == 0 and out == "" and "20 events written" in err
    table = pq.read_table(out_file)
    assert table.num_rows == 20 and str(table.schema.field("time").type) == "timestamp[ns, tz=UTC]"
    rows = table.to_pylist()
    assert [r["seq"] for r in rows] == [1, 2, *range(4, 21), 40] and {r["run"] for r in rows} == {"b"}
    assert rows[0]["ticker"] == "AAPL" and rows[0]["previous"] == 99.0 and rows[0]["kind"] == "high"
    assert table.column("time").cast("int64").to_pylist()[0] == T0 + S  # the ns are kept


def test_parquet_without_pyarrow_names_the_extra(
    config_file: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed: importing it raises ImportError
    code, _, err = run(capsys, "--config", config_file, "query", "--parquet", str(tmp_path / "x.parquet"))
    assert code == 1 and "pip install 'tickmesh[parquet]'" in err and not (tmp_path / "x.parquet").exists()


def test_pages_by_token(config_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    seqs: list[int] = []
    args = ["--config", config_file, "query", "--run", "a", "--json", "--limit", "6"]
    code, out, err = run(capsys, *args)
    while True:
        assert code == 0
        seqs += [json.loads(line)["seq"] for line in out.splitlines()]
        if "--page-token" not in err:
            break
        code, out, err = run(capsys, *args, "--page-token", err.split()[-1])
    assert seqs == list(range(1, 21))


def test_diff_two_runs(config_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--config", config_file, "diff", "a", "b", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(x["only_in"], x["seq"]) for x in lines] == [("a", 3), ("b", 40)]
    assert "only in a: 1 · only in b: 1 · in both: 19" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "yesterday-ish"], "since: 'yesterday-ish' is not a time"),
        (["--since", "2026-13-45"], "is not a time"),
        (["--since", "1999"], "outside 1980-01-01"),
        (["--since", "2026-12-01", "--until", "2026-11-01"], "until must be after since"),
        (["--kind", "highest"], "unknown kind 'highest'"),
        (["--source", "stocks"], "unknown source 'stocks'"),
        (["--limit", "100000000"], "limit must be 1..10,000"),
        (["--limit", "0"], "limit must be 1..10,000"),
        (["--offset", "-1"], "offset must be"),
        (["--ticker", "AAPL'; DROP TABLE events; --"], "unknown ticker"),
        (["--ticker", "' OR 1=1 --"], "unknown ticker"),
        (["--page-token", "not!a!token"], "malformed page token"),
        (["--run", "x' OR 'x'='x"], "run"),
        (["--seq-from", "9", "--seq-to", "3"], "seq-to must not be below seq-from"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    config_file: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "--config", config_file, "query", *argv)
    assert code == 2 and out == "" and message in err and "Traceback" not in err
    code, out, _ = run(capsys, "--config", config_file, "query", "--json", "--limit", "1000")
    assert len(out.splitlines()) == 40  # nothing was executed as SQL: every row is still there


def test_no_journal_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tickmesh.toml"
    path.write_text(to_toml({"journal": {"path": str(tmp_path / "none.sqlite3")}}))
    code, _, err = run(capsys, "--config", str(path), "query")
    assert code == 2 and "no journal at" in err and not (tmp_path / "none.sqlite3").exists()
