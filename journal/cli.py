"""`tickmesh-events`: query the journal (tables for people, --json/--csv for scripts) and diff two runs."""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from journal.backends import open_store
from journal.parquet import INSTALL, ParquetUnavailable, write_parquet
from journal.query import MAX_LIMIT, QueryError, build_query
from journal.store import SqlStore, StoredEvent, StoreError
from tickmesh.cli import EXIT_FAILURE
from tickmesh.runtime import parser, start

ENVELOPE = ("time", "seq", "kind", "ticker", "source", "price", "run")
HIDDEN = {"id", "priority", "record_seq", "ingest_ns", "detected_ns", "epoch", "published_ns", *ENVELOPE}
DIFF_PAGE = 5_000


def build_parser() -> argparse.ArgumentParser:
    p = parser("tickmesh-events", "Read the event journal: query events, compare two back-test runs.")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("query", help="events matching filters (all given filters must hold)")
    add_query_arguments(q)
    out = q.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per line")
    out.add_argument("--csv", action="store_true", help="CSV with a header row")
    out.add_argument("--parquet", metavar="FILE", help=f"write the rows to a Parquet file (needs {INSTALL})")
    d = sub.add_parser("diff", help="events only in run A, only in run B (matched by kind, ticker and time)")
    d.add_argument("run_a")
    d.add_argument("run_b")
    d.add_argument("--json", action="store_true", help="one JSON object per line, with `only_in`")
    return p


def add_query_arguments(q: argparse.ArgumentParser) -> None:
    """The filters and paging of a query (also `tickmesh-admin events`, through gRPC QueryEvents)."""
    q.add_argument("--ticker", action="append", default=[], help="this ticker (repeatable)")
    q.add_argument("--kind", action="append", default=[], help="this kind: high, low, trend, ... (repeatable)")
    q.add_argument("--source", action="append", default=[], help="this channel: tick, ohlcv, fmv (repeatable)")
    q.add_argument("--since", help="data time from (2026-11-30, 2026-11-30T14:30Z, -15m, or ns)")
    q.add_argument("--until", help="data time before (same forms)")
    q.add_argument("--seq-from", type=int, help="publication seq from (inclusive)")
    q.add_argument("--seq-to", type=int, help="publication seq to (inclusive)")
    q.add_argument("--epoch", type=int, help="only this aggregator epoch")
    q.add_argument("--run", help="only this run ('' = untagged events)")
    q.add_argument("--newest-first", action="store_true", help="newest data time first")
    q.add_argument("--limit", type=int, default=100, help=f"rows, 1..{MAX_LIMIT} (default 100)")
    pages = q.add_mutually_exclusive_group()
    pages.add_argument("--page-token", help="continue after the page that printed this token")
    pages.add_argument("--offset", type=int, default=0, help="skip this many rows")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = start(args, "events")
    if config is None:
        return 2
    try:
        store = open_store(config, os.environ, create=False)
    except StoreError as exc:
        print(f"events: {exc}", file=sys.stderr)
        return 2
    try:
        return query(store, args) if args.command == "query" else diff(store, args)
    except QueryError as exc:
        print(f"events: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    finally:
        store.close()


def query(store: SqlStore, args: argparse.Namespace) -> int:
    q = build_query(
        tickers=args.ticker, kinds=args.kind, sources=args.source, since=args.since, until=args.until,
        seq_from=args.seq_from, seq_to=args.seq_to, epoch=args.epoch, run=args.run, newest_first=args.newest_first,
        limit=args.limit, offset=args.offset, page_token=args.page_token,
    )  # fmt: skip
    rows = store.query(q)
    if args.parquet:
        try:
            written = write_parquet(rows, args.parquet)
        except (ParquetUnavailable, OSError) as exc:
            print(f"events: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"{written} events written to {args.parquet}", file=sys.stderr)
    elif args.json:
        for row in rows:
            print(json.dumps(row.as_dict()))
    elif args.csv:
        write_csv(rows)
    else:
        Console().print(table(rows, "events"))
    token = store.next_token(q, rows)
    if token:
        print(f"more: --page-token {token}", file=sys.stderr)
    return 0


def diff(store: SqlStore, args: argparse.Namespace) -> int:
    """Events of run A with no event of the same kind, ticker and data time in run B, and the other way."""
    a = {_match_key(r): r for r in store.pages(build_query(run=args.run_a, limit=DIFF_PAGE))}
    b = {_match_key(r): r for r in store.pages(build_query(run=args.run_b, limit=DIFF_PAGE))}
    only_a = [a[k] for k in a if k not in b]
    only_b = [b[k] for k in b if k not in a]
    if args.json:
        for run, rows in ((args.run_a, only_a), (args.run_b, only_b)):
            for row in rows:
                print(json.dumps({"only_in": run, **row.as_dict()}))
    else:
        console = Console()
        console.print(table(only_a, f"only in {args.run_a}"))
        console.print(table(only_b, f"only in {args.run_b}"))
    summary = f"{args.run_a}: {len(a)} events · {args.run_b}: {len(b)} · only in {args.run_a}: {len(only_a)}"
    print(f"{summary} · only in {args.run_b}: {len(only_b)} · in both: {len(a) - len(only_a)}", file=sys.stderr)
    return 0


def _match_key(row: StoredEvent) -> tuple[str, str, int]:
    return (row.kind, row.ticker, row.time)


def clock(ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ns // 1_000_000 % 1_000:03d}"


def _extra(event: dict[str, object]) -> str:
    shown = {k: v for k, v in event.items() if k not in HIDDEN}
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


def table(rows: Iterable[StoredEvent], title: str) -> Table:
    return events_table((row.as_dict() for row in rows), title)


def events_table(events: Iterable[dict[str, Any]], title: str) -> Table:
    """Events as --json prints them (the event's fields plus seq, epoch, published_ns, run), as a table."""
    out = Table(title=title, title_justify="left")
    for name in (*ENVELOPE, "fields"):
        out.add_column(name, justify="right" if name in ("seq", "price") else "left", no_wrap=name != "fields")
    for e in events:
        out.add_row(clock(e["time"]), str(e["seq"]), e["kind"], e["ticker"], e["source"], f"{e['price']:.4f}",
                    e["run"], _extra(e))  # fmt: skip
    return out


def write_csv(rows: list[StoredEvent]) -> None:
    dicts = [row.as_dict() for row in rows]
    header = list(dict.fromkeys(["id", *ENVELOPE, "epoch", "published_ns", *(k for d in dicts for k in d)]))
    writer = csv.DictWriter(sys.stdout, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(dicts)


if __name__ == "__main__":
    sys.exit(main())
