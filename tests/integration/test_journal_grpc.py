"""QueryEvents on the real control process, over both journal backends: results, paging, errors, the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from control.v1 import control_pb2 as pb
from journal.backends import open_store
from tests.conftest import JournalBackend
from tests.integration.control_helpers import Control, running_control
from tests.unit.test_journal_store import config_for, publication, write
from tickmesh.config import to_toml


@pytest.fixture
def control(journal_backend: JournalBackend) -> Iterator[Control]:
    """Control reading a journal of 30 events (AAPL odd seqs, MSFT even); the DSN goes in its config file."""
    store = open_store(config_for(journal_backend), journal_backend.env, create=True)
    write(store, [publication(i, ticker="AAPL" if i % 2 else "MSFT") for i in range(1, 31)], run="r1")
    store.close()
    settings = dict(journal_backend.settings)
    if "TICKMESH_JOURNAL_DSN" in journal_backend.env:
        settings["dsn"] = journal_backend.env["TICKMESH_JOURNAL_DSN"]
    with running_control(extra=to_toml({"journal": settings})) as c:
        yield c


def query(c: Control, **fields: object) -> list[pb.JournalEvent]:
    return list(c.stub.QueryEvents(pb.QueryEventsRequest(**fields), metadata=c.md, timeout=10))  # type: ignore[arg-type]


def error(c: Control, metadata: list[tuple[str, str]] | None = None, **fields: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        list(c.stub.QueryEvents(pb.QueryEventsRequest(**fields), metadata=metadata or c.md, timeout=10))  # type: ignore[arg-type]
    return info.value


def test_query_events_streams_one_page_and_continues_by_token(control: Control) -> None:
    events = query(control, tickers=["AAPL"], kinds=["high"], limit=10)
    assert [e.seq for e in events] == list(range(1, 21, 2))
    first = events[0]
    assert first.ticker == "AAPL" and first.kind == "high" and first.source == "tick" and first.run == "r1"
    assert json.loads(first.fields_json)["previous"] == 99.0
    rest = query(control, tickers=["AAPL"], kinds=["high"], limit=10, page_token=events[-1].page_token)
    assert [e.seq for e in rest] == list(range(21, 31, 2))
    assert [e.seq for e in query(control, seq_from=5, seq_to=7, newest_first=True)] == [7, 6, 5]
    assert query(control, run="other") == [] and len(query(control, run="r1", limit=100)) == 30


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"since": "last tuesday"}, "since"),
        ({"kinds": ["highs"]}, "unknown kind"),
        ({"tickers": ["X'; DELETE FROM events; --"]}, "unknown ticker"),
        ({"limit": 1_000_000}, "limit must be"),
        ({"page_token": "%%%"}, "malformed page token"),
    ],
)
def test_bad_arguments_are_invalid_argument(control: Control, fields: dict[str, Any], message: str) -> None:
    err = error(control, **fields)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in (err.details() or "")
    assert len(query(control, limit=100)) == 30


@pytest.mark.parametrize("metadata", [[("x-none", "")], [("authorization", "Bearer wrong")]])
def test_query_events_needs_the_token(control: Control, metadata: list[tuple[str, str]]) -> None:
    assert error(control, metadata, limit=5).code() == grpc.StatusCode.UNAUTHENTICATED


def test_no_journal_is_failed_precondition(tmp_path: Path) -> None:
    with running_control(extra=to_toml({"journal": {"path": str(tmp_path / "absent.sqlite3")}})) as c:
        err = error(c)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "no journal at" in (err.details() or "")


def test_tickmesh_admin_events_queries_through_control(control: Control) -> None:
    """`tickmesh-admin events`: the same filters as tickmesh-events query, answered by QueryEvents."""
    done = admin(control, "--json", "events", "--ticker", "AAPL", "--kind", "high", "--limit", "10")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and [e["seq"] for e in lines] == list(range(1, 21, 2)), done.stderr
    assert lines[0]["previous"] == 99.0 and lines[0]["run"] == "r1" and "more: --page-token" in done.stderr
    token = done.stderr.split("--page-token ")[1].split()[0]
    rest = admin(control, "events", "--ticker", "AAPL", "--limit", "10", "--page-token", token, "--json")
    assert [json.loads(line)["seq"] for line in rest.stdout.splitlines()] == list(range(21, 31, 2))
    table = admin(control, "events", "--seq-from", "5", "--seq-to", "6", "--run", "r1")
    assert table.returncode == 0 and "MSFT" in table.stdout and "AAPL" in table.stdout and "previous=99" in table.stdout
    bad = admin(control, "events", "--since", "last tuesday")
    assert bad.returncode == 2 and "since" in bad.stderr and "Traceback" not in bad.stderr
    refused = admin(control, "events", token="wrong")
    assert refused.returncode == 4 and "Traceback" not in refused.stderr


def admin(c: Control, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real `tickmesh-admin` (a subprocess) against `c`, with its token unless told otherwise."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")}
    argv = [sys.executable, "-m", "control.admin", "--target", c.target, "--token", token or str(c.token), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=clean, cwd=c.dir)
