"""Journal query arguments: the time forms, page tokens bound to their query's order, limits."""

from __future__ import annotations

import pytest

from journal.query import QueryError, build_query, page_token, parse_time

S = 1_000_000_000
NOW = 1_796_000_000 * S


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-11-30", 1_795_996_800 * S),
        ("2026-11-30T14:30:00Z", 1_795_996_800 * S + 52_200 * S),
        ("2026-11-30T15:30:00+01:00", 1_795_996_800 * S + 52_200 * S),
        ("2026-11-30T14:30:00.250", 1_795_996_800 * S + 52_200 * S + 250_000_000),
        ("now", NOW),
        ("-90s", NOW - 90 * S),
        ("-15m", NOW - 900 * S),
        ("-2h", NOW - 7_200 * S),
        ("-1.5d", NOW - 129_600 * S),
        (str(NOW), NOW),
    ],
)
def test_time_forms(text: str, ns: int) -> None:
    assert parse_time(text, "since", now_ns=NOW) == ns


def test_a_page_token_only_continues_a_query_with_the_same_order() -> None:
    oldest_first = build_query(limit=10)
    token = page_token(oldest_first, (NOW, 42))
    assert build_query(limit=10, page_token=token).after == (NOW, 42)
    with pytest.raises(QueryError, match="another order"):
        build_query(limit=10, newest_first=True, page_token=token)
    with pytest.raises(QueryError, match="another order"):
        build_query(order="published", page_token=token)
    with pytest.raises(QueryError, match="not both"):
        build_query(offset=5, page_token=token)


def test_tickers_match_exactly_once_each() -> None:
    assert build_query(tickers=["AAPL", "AAPL", " MSFT ", "brk.a"]).tickers == ("AAPL", "MSFT", "brk.a")
    with pytest.raises(QueryError, match="at most 100"):
        build_query(tickers=[f"T{i}" for i in range(101)])
    with pytest.raises(QueryError, match="unknown ticker"):
        build_query(tickers=["A B"])
    with pytest.raises(QueryError, match="run"):
        build_query(run="r1\n")  # the whole value matches, not up to a trailing newline
