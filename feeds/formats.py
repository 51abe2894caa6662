"""File formats a replay reads: each reader checks the header at once, then yields (line, record or RowError)."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain
from typing import TextIO

from feeds.polygon_wire import PolygonDecoder
from feeds.records import RowError, integer, make, number, to_ns
from tickmesh.schema import Bar, Record, Trade

log = logging.getLogger(__name__)
NS = 1_000_000_000
DAY_NS = 86_400 * NS
FORMATS = ("polygon-aggs", "polygon-trades", "ohlcv", "jsonl")
Parsed = tuple[int, "Record | RowError"]
TIME_COLUMNS = ("datetime", "date", "timestamp", "time", "date_time", "t")
_DATE_ONLY = re.compile(r"^\d{4}[-/]\d{2}[-/]\d{2}$|^\d{8}$")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?$")


class FormatError(ValueError):
    """The file as a whole cannot be read (unknown format, missing column, no ticker); says how to fix it."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line  # the file's line the error is about (its header)


def detect(name: str, first_line: str) -> str:
    """The format of a file from its name and first non-empty line."""
    base = name.lower().removesuffix(".gz")
    if base.endswith((".jsonl", ".ndjson", ".json")) or first_line.lstrip().startswith(("[", "{")):
        return "jsonl"
    cells = [h.strip().lower() for h in next(csv.reader([first_line]), [])]
    header = set(cells)
    if {"ticker", "window_start", "open", "close"} <= header:
        return "polygon-aggs"
    if {"ticker", "sip_timestamp", "price", "size"} <= header:
        return "polygon-trades"
    if {"open", "high", "low", "close"} <= header and (header & set(TIME_COLUMNS) or cells[0] == ""):
        return "ohlcv"  # an empty first cell: pandas' df.to_csv() with an unnamed date index
    raise FormatError(
        f"cannot tell the format from the header {first_line.strip()[:120]!r}: give --format "
        f"{', '.join(FORMATS)}, or name the columns as docs/feeds.md lists"
    )


def parse_interval(text: str) -> int:
    """`60`, `30s`, `5m`, `1h`, `1d` → nanoseconds."""
    match = _INTERVAL.match(text.strip().lower())
    if not match:
        raise FormatError(f"bad interval {text!r} (use e.g. 60, 30s, 5m, 1h, 1d)")
    unit = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3_600, "d": 86_400}[match.group(2)]
    ns = int(float(match.group(1)) * unit * NS)
    if ns <= 0:
        raise FormatError(f"bad interval {text!r}: must be positive")
    return ns


def _rows(stream: TextIO) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """Lower-cased header and (line number, row) pairs; a header-only or empty file yields nothing."""
    reader = csv.reader(stream)
    header = [h.strip().lower() for h in next(reader, [])]

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                yield reader.line_num, {"__error__": f"{len(cells)} cells, the header has {len(header)}"}
                continue
            yield reader.line_num, dict(zip(header, cells, strict=True))

    return header, rows()


def _require(header: list[str], fmt: str, *names: str) -> None:
    missing = [n for n in names if n not in header]
    if missing:
        raise FormatError(
            f"missing column(s) {', '.join(missing)} in header {','.join(header)!r}: "
            f"the {fmt} format needs {', '.join(names)} (or give another --format)"
        )


def polygon_aggs(stream: TextIO, interval_ns: int) -> Iterator[Parsed]:
    """Polygon aggregates flat file: ticker,volume,open,close,high,low,window_start(ns),transactions."""
    header, rows = _rows(stream)
    _require(header, "polygon-aggs", "ticker", "volume", "open", "close", "high", "low", "window_start")
    return _polygon_aggs(rows, interval_ns)


def _polygon_aggs(rows: Iterator[tuple[int, dict[str, str]]], interval_ns: int) -> Iterator[Parsed]:
    for line, row in rows:
        try:
            _check(row)
            start = to_ns(row["window_start"], "window_start")
            count = integer(row["transactions"], "transactions") if row.get("transactions") else None
            yield (
                line,
                make(
                    Bar,
                    row["ticker"],
                    number(row["open"], "open"),
                    number(row["high"], "high"),
                    number(row["low"], "low"),
                    number(row["close"], "close"),
                    number(row["volume"], "volume"),
                    start,
                    start + interval_ns,
                    None,
                    None,
                    count,
                ),
            )
        except RowError as exc:
            yield line, exc


def polygon_trades(stream: TextIO) -> Iterator[Parsed]:
    """Polygon trades flat file: ticker,conditions,exchange,price,sequence_number,sip_timestamp,size (+ others)."""
    header, rows = _rows(stream)
    _require(header, "polygon-trades", "ticker", "price", "size", "sip_timestamp")
    return _polygon_trades(rows)


def _polygon_trades(rows: Iterator[tuple[int, dict[str, str]]]) -> Iterator[Parsed]:
    for line, row in rows:
        try:
            _check(row)
            conditions = tuple(integer(c, "conditions") for c in row.get("conditions", "").split(",") if c.strip())
            exchange = integer(row["exchange"], "exchange") if row.get("exchange") else None
            sequence = integer(row["sequence_number"], "sequence_number") if row.get("sequence_number") else None
            yield (
                line,
                make(
                    Trade,
                    row["ticker"],
                    number(row["price"], "price"),
                    number(row["size"], "size"),
                    to_ns(row["sip_timestamp"], "sip_timestamp"),
                    exchange,
                    conditions,
                    sequence,
                ),
            )
        except RowError as exc:
            yield line, exc


def parse_time(text: str) -> tuple[int, bool]:
    """(ns, date only?) from a date, an ISO datetime (naive = UTC) or an epoch number."""
    text = text.strip()
    if _DATE_ONLY.match(text):
        digits = text.replace("-", "").replace("/", "")
        try:
            day = datetime.strptime(digits, "%Y%m%d").replace(tzinfo=UTC)
        except ValueError:
            raise RowError(f"date: not a valid date: {text[:40]!r}") from None
        return int(day.timestamp()) * NS, True
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return to_ns(text, "date"), False
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RowError(f"date: not a date or time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * NS + moment.microsecond * 1_000, False


def ohlcv(stream: TextIO, ticker: str | None, interval_ns: int | None) -> Iterator[Parsed]:
    """Generic OHLCV CSV (Date/Datetime, Open, High, Low, Close, Volume; any case).

    The time column is named as in TIME_COLUMNS, or is the first column under an empty
    header cell (pandas' `df.to_csv()` of a date-indexed frame). Date-only rows cover
    [date 00:00 UTC, + interval) with the interval given, else one day; intraday rows
    cover [time, time + interval), the interval given or inferred from the smallest
    positive gap between the first rows (60 s if there is only one row).
    """
    header, rows = _rows(stream)
    time_col = next((c for c in TIME_COLUMNS if c in header), "" if header and header[0] == "" else None)
    ticker_col = next((c for c in ("ticker", "symbol") if c in header), None)
    _require(header, "ohlcv", "open", "high", "low", "close", "volume")
    if time_col is None:
        raise FormatError(
            f"no date or time column in header {','.join(header)!r}: name it one of {', '.join(TIME_COLUMNS)}, "
            "or leave the first header cell empty (as pandas writes a date index)"
        )
    if ticker is None and ticker_col is None:
        raise FormatError("this OHLCV file has no ticker or symbol column: give --ticker SYMBOL")
    parsed = ((line, _ohlcv_row(row, time_col, ticker_col, ticker)) for line, row in rows)
    return _with_ends(parsed, interval_ns)


def _ohlcv_row(row: dict[str, str], time_col: str, ticker_col: str | None, ticker: str | None) -> tuple | RowError:
    try:
        _check(row)
        start, daily = parse_time(row[time_col])
        symbol = ticker if ticker else row[ticker_col or "ticker"].strip()
        values = [number(row[k], k) for k in ("open", "high", "low", "close", "volume")]
        return symbol, values, start, daily
    except RowError as exc:
        return exc


def _with_ends(parsed: Iterable[tuple[int, tuple | RowError]], interval_ns: int | None) -> Iterator[Parsed]:
    """Give each bar its end: `interval_ns` if given; else one day for date-only rows and, for intraday
    rows, the smallest gap in a look-ahead of up to 50 rows."""
    parsed = iter(parsed)
    ahead: list[tuple[int, tuple | RowError]] = []
    given = interval_ns
    if given is None:
        for item in parsed:
            ahead.append(item)
            if len(ahead) >= 50:
                break
    starts = [v[2] for _, v in ahead if isinstance(v, tuple)]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False) if b > a]
    intraday_ns = given or (min(gaps) if gaps else 60 * NS)
    if given is None and gaps and min(gaps) > DAY_NS and all(v[3] for _, v in ahead if isinstance(v, tuple)):
        log.warning(
            "date-only rows at least %g days apart are read as one-day bars; give --interval (e.g. %gd) "
            "if each covers its whole gap",
            min(gaps) / DAY_NS,
            min(gaps) / DAY_NS,
        )
    for line, value in chain(ahead, parsed):
        if isinstance(value, RowError):
            yield line, value
            continue
        symbol, (o, h, lo, c, v), start, daily = value
        end = start + ((given or DAY_NS) if daily else intraday_ns)
        try:
            yield line, make(Bar, symbol, o, h, lo, c, v, start, end)
        except RowError as exc:
            yield line, exc


def jsonl(stream: TextIO, decoder: PolygonDecoder | None = None) -> Iterator[Parsed]:
    """JSON lines of Polygon websocket frames (as `polygon --record` writes them); statuses are skipped."""
    decoder = decoder or PolygonDecoder()
    for line_no, line in enumerate(stream, 1):
        if not line.strip():
            continue
        result = decoder.decode(line)
        for error in result.errors:
            yield line_no, RowError(error)
        for record in result.records:
            yield line_no, record


def _check(row: dict[str, str]) -> None:
    if "__error__" in row:
        raise RowError(row["__error__"])
