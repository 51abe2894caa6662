"""File formats of the replay feed: detection, mapping to records, and bad rows reported by line and reason."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from feeds.app import build_parser
from feeds.formats import FormatError, detect, jsonl, ohlcv, parse_interval, parse_time, polygon_aggs, polygon_trades
from feeds.polygon_wire import PolygonDecoder
from feeds.records import RowError, make, to_ns
from feeds.replay import Summary, read_file
from tickmesh.schema import Bar, FairMarketValue, Trade

DATA = Path(__file__).resolve().parent.parent / "data"
NS = 10**9
DAY = 86_400 * NS


def split(items: list) -> tuple[list, list[tuple[int, str]]]:
    good = [r for _, r in items if not isinstance(r, RowError)]
    bad = [(line, str(r)) for line, r in items if isinstance(r, RowError)]
    return good, bad


def items_of(name: str, *argv: str) -> list:
    args = build_parser().parse_args(["replay", str(DATA / name), *argv])
    parsed, raw = read_file(DATA / name, args, PolygonDecoder())
    try:
        return list(parsed)
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("name", "first", "fmt"),
    [
        ("x.csv", "ticker,volume,open,close,high,low,window_start,transactions", "polygon-aggs"),
        (
            "x.csv.gz",
            "ticker,conditions,correction,exchange,id,participant_timestamp,price,sequence_number,"
            "sip_timestamp,size,tape,trf_id,trf_timestamp",
            "polygon-trades",
        ),
        ("x.csv", "Date,Open,High,Low,Close,Adj Close,Volume", "ohlcv"),
        ("x.txt", "DATETIME,OPEN,HIGH,LOW,CLOSE,VOLUME", "ohlcv"),
        ("x.csv", ",Open,High,Low,Close,Adj Close,Volume", "ohlcv"),  # pandas: an unnamed date index
        ("x.jsonl", "anything", "jsonl"),
        ("x.log", '[{"ev":"status"}]', "jsonl"),
    ],
)
def test_format_is_detected_from_name_or_header(name: str, first: str, fmt: str) -> None:
    assert detect(name, first) == fmt


def test_an_unknown_header_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="--format"):
        detect("x.csv", "a,b,c")


def test_generic_daily_csv_bars_span_a_utc_day_and_bad_rows_carry_line_and_reason() -> None:
    good, bad = split(items_of("daily_ohlcv.csv", "--ticker", "ACME"))
    assert len(good) == 11
    first = good[0]
    assert first == Bar("ACME", 100.0, 101.0, 99.5, 100.5, 1_000_000.0, 1_704_153_600 * NS, 1_704_153_600 * NS + DAY)
    assert [line for line, _ in bad] == [9, 12, 13, 16]
    reasons = dict(bad)
    assert reasons[9].startswith("high: Expected `float` > 0.0")  # NaN
    assert reasons[12].startswith("volume: Expected `float` >= 0")
    assert "low <= open, close <= high" in reasons[13]
    assert reasons[16] == "5 cells, the header has 7"


def test_generic_csv_needs_a_ticker() -> None:
    with pytest.raises(FormatError, match="--ticker"):
        items_of("daily_ohlcv.csv")


def test_intraday_csv_uses_offsets_and_infers_the_interval() -> None:
    good, bad = split(items_of("intraday_ohlcv.csv"))
    assert not bad and len(good) == 4 and {b.ticker for b in good} == {"ACME"}
    assert good[0].start == 1_709_303_400 * NS  # 09:30 at -05:00 is 14:30 UTC
    assert all(b.end - b.start == 300 * NS for b in good)
    good, _ = split(items_of("intraday_ohlcv.csv", "--interval", "1m", "--ticker", "OVER"))
    assert good[0].end - good[0].start == 60 * NS and good[0].ticker == "OVER"


def test_polygon_minute_aggregates_from_gzip() -> None:
    good, bad = split(items_of("polygon_minute_aggs.csv.gz"))
    assert good[0] == Bar(
        "AAPL", 200.29, 200.5, 200.2, 200.5, 4930.0, 1744792500 * NS, 1744792560 * NS, None, None, 129
    )
    assert [b.ticker for b in good] == ["AAPL", "AAPL", "MSFT"]
    assert [line for line, _ in bad] == [4] and "low <= open, close <= high" in bad[0][1]
    daily = list(
        polygon_aggs(
            io.StringIO("ticker,volume,open,close,high,low,window_start\nX,1,1,1,1,1,1744761600000000000\n"),
            parse_interval("1d"),
        )
    )
    bar = daily[0][1]
    assert isinstance(bar, Bar) and bar.end - bar.start == DAY


def test_polygon_trades_with_quoted_conditions() -> None:
    good, bad = split(items_of("polygon_trades.csv"))
    assert good[0] == Trade("A", 142.99, 5.0, 1712306654208740096, 11, (12, 37), 3807)
    assert good[2].conditions == (12,) and good[3].conditions == () and len(good) == 4
    assert bad == [(5, "price: Expected `float` > 0.0")]


def test_jsonl_session_skips_statuses_drops_duplicates_and_reports_bad_lines() -> None:
    decoder = PolygonDecoder()
    with open(DATA / "polygon_session.jsonl") as f:
        good, bad = split(list(jsonl(f, decoder)))
    assert [type(r).__name__ for r in good] == ["Trade", "Trade", "Bar", "FairMarketValue", "Trade"]
    assert [r.sequence for r in good if isinstance(r, Trade)] == [1001, 1002, 1004]
    assert good[3] == FairMarketValue("MSFT", 415.2, 1712306654400000000)
    assert [line for line, _ in bad] == [7, 8]
    assert bad[0][1] == "message 0 (T): price: Expected `float`, got `str`"
    assert bad[1][1].startswith("not JSON")
    assert decoder.counters["duplicates.T"] == 1 and decoder.counters["ignored.Q"] == 1


def test_gzip_is_recognised_by_content(tmp_path: Path) -> None:
    path = tmp_path / "bars.data"  # no .gz suffix
    with gzip.open(path, "wt") as f:
        f.write((DATA / "intraday_ohlcv.csv").read_text())
    args = build_parser().parse_args(["replay", str(path)])
    parsed, raw = read_file(path, args, PolygonDecoder())
    assert len([r for _, r in parsed if isinstance(r, Bar)]) == 4
    raw.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02", (1_704_153_600 * NS, True)),
        ("20240102", (1_704_153_600 * NS, True)),
        ("2024/01/02", (1_704_153_600 * NS, True)),
        ("2024-01-02T14:30:00Z", (1_704_205_800 * NS, False)),
        ("2024-01-02 09:30:00.250-05:00", (1_704_205_800 * NS + 250_000_000, False)),
        ("1704205800", (1_704_205_800 * NS, False)),
        ("1704205800000", (1_704_205_800 * NS, False)),
    ],
)
def test_time_column_values(text: str, expected: tuple[int, bool]) -> None:
    assert parse_time(text) == expected


def test_bad_dates_are_row_errors() -> None:
    for text in ("2024-13-45", "yesterday", ""):
        with pytest.raises(RowError, match="date"):
            parse_time(text)


def test_timestamps_in_any_unit_become_nanoseconds() -> None:
    ns = 1_712_306_654_208_000_000
    assert to_ns(1_712_306_654) == 1_712_306_654 * NS
    assert to_ns(1_712_306_654_208) == to_ns(1_712_306_654_208_000) == to_ns(ns) == ns
    assert to_ns(1_712_306_654.208) == ns
    for bad in (None, "x", -5, 0, float("nan"), True):
        with pytest.raises(RowError):
            to_ns(bad)


def test_make_names_the_failing_field() -> None:
    with pytest.raises(RowError, match=r"^ticker: Expected `str` matching"):
        make(Trade, "bad ticker!", 1.0, 1.0, 1_712_306_654 * NS)
    with pytest.raises(RowError, match=r"^conditions\[1\]: Expected `int` >= 0"):
        make(Trade, "A", 1.0, 1.0, 1_712_306_654 * NS, None, [1, -2])
    with pytest.raises(RowError, match=r"^price: Expected `float` < 1000000000"):
        make(Trade, "A", float("inf"), 1.0, 1_712_306_654 * NS)


def test_summary_counts_reasons_and_keeps_examples() -> None:
    summary = Summary()
    summary.reject("a.csv:3", RowError("price: Expected `float` > 0.0"))
    summary.reject("s.jsonl:7", RowError("message 0 (T): price: Expected `float`, got `str`"))
    assert summary.reasons == {"price": 1, "T price": 1}
    assert "rejected a.csv:3: price" in summary.text()
    assert summary.as_dict()["rejected"] == 2


def test_parse_interval() -> None:
    assert parse_interval("90") == 90 * NS and parse_interval("5m") == 300 * NS and parse_interval("1d") == DAY
    with pytest.raises(FormatError):
        parse_interval("soon")


def test_a_csv_without_a_time_column_is_refused() -> None:
    with pytest.raises(FormatError, match="date or time column"):
        list(ohlcv(io.StringIO("open,high,low,close,volume\n1,1,1,1,1\n"), "X", None))
    with pytest.raises(FormatError, match="missing column"):
        list(polygon_trades(io.StringIO("ticker,price\nA,1\n")))
