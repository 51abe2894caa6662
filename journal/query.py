"""One journal query: filters validated, times parsed, pages keyed; the same for the CLI, gRPC and --since."""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import time
from collections.abc import Iterable
from typing import Literal

import msgspec
from msgspec import Struct

from tickmesh.config import CHANNELS
from tickmesh.schema import EVENT_KINDS, TIME_MAX_NS, TIME_MIN_NS

MAX_LIMIT = 10_000  # rows per page; page on for more
MAX_OFFSET = 1_000_000  # deeper than this: use page tokens (an offset re-reads every skipped row)
MAX_VALUES = 100  # tickers (or kinds, sources) in one query
MAX_RUN = 64
SEQ_MAX = 2**63 - 1
TICKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:\-]{0,31}$")  # the schema's ticker rule
RUN = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
Order = Literal["time", "published"]


class QueryError(ValueError):
    """A query argument is invalid; the message names it and says what is allowed."""


class EventQuery(Struct, frozen=True, kw_only=True):
    """What to read from the journal. `order`: by data time, or by publication (epoch, seq)."""

    tickers: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    since_ns: int | None = None  # data time, inclusive
    until_ns: int | None = None  # data time, exclusive
    seq_from: int | None = None  # publication seq, inclusive
    seq_to: int | None = None  # inclusive
    epoch: int | None = None
    run: str | None = None  # None: any run; "" untagged events only
    newest_first: bool = False
    order: Order = "time"
    limit: int = 100
    offset: int = 0
    after: tuple[int, ...] | None = None  # the sort key of the last row of the previous page

    def key_columns(self) -> tuple[str, ...]:
        """The columns rows are sorted (and paged) by; `n` (insertion order) breaks ties."""
        return ("time", "n") if self.order == "time" else ("epoch", "seq", "n")


def parse_time(text: str, what: str, now_ns: int | None = None) -> int:
    """ns since the epoch from an ISO 8601 date or time (UTC unless it says), `now`, `-90s`/`-15m`/`-2h`/`-1d`
    (before now) or an integer of ns."""
    text = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    if text == "now":
        return now
    if match := RELATIVE.fullmatch(text):
        return now - int(float(match[1]) * UNIT_S[match[2]] * 1_000_000_000)
    if text.isdigit():
        ns = int(text)
    else:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise QueryError(
                f"{what}: {text[:40]!r} is not a time (use 2026-11-30, 2026-11-30T14:30:00Z, -15m or ns)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        ns = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000
    if not TIME_MIN_NS <= ns < TIME_MAX_NS:
        raise QueryError(f"{what}: {text[:40]!r} is outside 1980-01-01 .. 2100-01-01")
    return ns


def _checked(values: Iterable[str], what: str, allowed: Iterable[str] | re.Pattern[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(out) > MAX_VALUES:
        raise QueryError(f"{what}: at most {MAX_VALUES} values, got {len(out)}")
    for value in out:
        ok = allowed.fullmatch(value) if isinstance(allowed, re.Pattern) else value in allowed
        if not ok:
            hint = "letters, digits, '.', ':' or '-', 1-32 characters" if what == "ticker" else ", ".join(allowed)  # type: ignore[arg-type]
            raise QueryError(f"unknown {what} {value[:40]!r} ({hint})")
    return out


def _bounded(value: int | None, what: str, low: int, high: int) -> int | None:
    if value is not None and not low <= value <= high:
        raise QueryError(f"{what} must be {low:,}..{high:,}, got {value:,}")
    return value


def build_query(
    *,
    tickers: Iterable[str] = (),
    kinds: Iterable[str] = (),
    sources: Iterable[str] = (),
    since: str | None = None,
    until: str | None = None,
    seq_from: int | None = None,
    seq_to: int | None = None,
    epoch: int | None = None,
    run: str | None = None,
    newest_first: bool = False,
    order: Order = "time",
    limit: int = 100,
    offset: int = 0,
    page_token: str | None = None,
) -> EventQuery:
    """A validated EventQuery; QueryError names the first bad argument."""
    since_ns = parse_time(since, "since") if since else None
    until_ns = parse_time(until, "until") if until else None
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        raise QueryError("until must be after since")
    if seq_from is not None and seq_to is not None and seq_to < seq_from:
        raise QueryError("seq-to must not be below seq-from")
    if run is not None and run != "" and not RUN.fullmatch(run):
        raise QueryError(f"run {run[:40]!r}: letters, digits, '.', '_', ':' or '-', at most {MAX_RUN} characters")
    query = EventQuery(
        tickers=_checked(tickers, "ticker", TICKER),  # exact: the schema allows lower case
        kinds=_checked(kinds, "kind", EVENT_KINDS),
        sources=_checked(sources, "source", CHANNELS),
        since_ns=since_ns,
        until_ns=until_ns,
        seq_from=_bounded(seq_from, "seq-from", 0, SEQ_MAX),
        seq_to=_bounded(seq_to, "seq-to", 0, SEQ_MAX),
        epoch=_bounded(epoch, "epoch", 0, SEQ_MAX),
        run=run,
        newest_first=newest_first,
        order=order,
        limit=_bounded(limit, "limit", 1, MAX_LIMIT) or 1,
        offset=_bounded(offset, "offset", 0, MAX_OFFSET) or 0,
    )
    if page_token:
        if offset:
            raise QueryError("give a page token or an offset, not both")
        query = msgspec.structs.replace(query, after=decode_token(page_token, query))
    return query


def page_token(query: EventQuery, key: tuple[int, ...]) -> str:
    """An opaque token for the page after the row whose sort key is `key`."""
    direction = "desc" if query.newest_first else "asc"
    text = ":".join([query.order, direction, *map(str, key)])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str, query: EventQuery) -> tuple[int, ...]:
    """The sort key a token carries; QueryError if it is malformed or from a differently ordered query."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        order, direction, *key = text.split(":")
        values = tuple(int(v) for v in key)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError("malformed page token") from None
    if (order, direction) != (query.order, "desc" if query.newest_first else "asc"):
        raise QueryError("the page token belongs to a query with another order")
    if len(values) != len(query.key_columns()) or any(not 0 <= v <= SEQ_MAX for v in values):
        raise QueryError("malformed page token")
    return values
