"""QueryEvents on the real control process, over both journal backends: results, paging, errors, the token."""

from __future__ import annotations

import json
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
