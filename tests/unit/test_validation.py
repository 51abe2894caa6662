"""Ingest decoding: every record accepted or rejected with a countable reason."""

from __future__ import annotations

import msgspec
import pytest

from router.validation import decode_frame
from tickmesh.boundary import Rejection, decode
from tickmesh.schema import Bar, FairMarketValue, High, Mark, Trade, encoder, event_decoder

NOW = 1_732_431_234_567_000_000
MAX = 1 << 20
raw = msgspec.msgpack.encode


def reasons(frame: bytes) -> list[tuple[str, str | None]]:
    return [(r.reason, r.channel) for r in decode_frame(frame, MAX)[1]]


def test_a_clean_frame_decodes_on_the_fast_path() -> None:
    records = [
        Trade("AAPL", 1.5, 10, NOW, exchange=4, conditions=(12, 37), sequence=9),
        Bar("MSFT", 1, 2, 0.5, 1.5, 100, NOW - 60_000_000_000, NOW, vwap=1.2),
        FairMarketValue("NVDA", 3.0, NOW, confidence=0.9),
        Mark("feed-1", 3),
    ]
    items, rejections = decode_frame(encoder.encode(records), MAX)
    assert items == records and rejections == []


def test_a_single_record_without_a_list_is_accepted() -> None:
    assert decode_frame(encoder.encode(Trade("A", 1.0, 1, NOW)), MAX) == ([Trade("A", 1.0, 1, NOW)], [])


def test_each_field_problem_has_its_reason_and_channel() -> None:
    assert reasons(raw([["T", "AAPL", float("nan"), 1, NOW]])) == [("bad_price", "tick")]
    assert reasons(raw([["T", "AAPL", 1.0, -1, NOW]])) == [("bad_size", "tick")]
    assert reasons(raw([["T", "aapl lower", 1.0, 1, NOW]])) == [("bad_ticker", "tick")]
    assert reasons(raw([["T", "AAPL", 1.0, 1, 2**64 - 1]])) == [("bad_timestamp", "tick")]
    assert reasons(raw([["F", "AAPL", 1.0, NOW, None, 1.5]])) == [("bad_confidence", "fmv")]
    assert reasons(raw([["B", "X", 1, 2, 0.5, 1.5, 1, NOW, NOW]])) == [("invalid_bar", "ohlcv")]
    assert reasons(raw([["T", "AAPL"]])) == [("wrong_field_count", "tick")]
    assert reasons(raw([["Q", 1]])) == [("unknown_type", None)]
    assert reasons(raw([17])) == [("not_a_record", None)]


def test_frame_level_problems() -> None:
    assert reasons(b"\xc1") == [("malformed", None)]
    assert reasons(encoder.encode([Trade("A", 1.0, 1, NOW)])[:-2]) == [("truncated", None)]
    assert reasons(b"x" * (MAX + 1)) == [("oversize", None)]
    assert reasons(b"\x91" * 50_000) == [("too_deep", None)]
    assert reasons(raw({"a": 1})) == [("not_a_record", None)]


def test_good_records_around_a_bad_one_survive() -> None:
    good = [Trade("A", 1.0, 1, NOW), Trade("B", 2.0, 1, NOW)]
    frame = b"\x93" + encoder.encode(good[0]) + raw(["T", "X", -1.0, 1, NOW]) + encoder.encode(good[1])
    items, rejections = decode_frame(frame, MAX)
    assert items == good and [r.reason for r in rejections] == ["bad_price"]


@pytest.mark.parametrize("ticker", ["AAPL\n", "\nAAPL", "AA\nPL", "AAPL\r", "AAPL "])
def test_a_ticker_matches_the_pattern_whole(ticker: str) -> None:
    """`$` matches before a trailing newline: the pattern is applied to the whole ticker, in records
    of every channel and in events (the aggregator takes events from a socket too)."""
    assert reasons(raw([["T", ticker, 1.0, 1, NOW]])) == [("bad_ticker", "tick")]
    assert reasons(raw([["B", ticker, 1, 2, 0.5, 1.5, 1, NOW - 60_000_000_000, NOW]])) == [("bad_ticker", "ohlcv")]
    assert reasons(raw([["F", ticker, 1.0, NOW]])) == [("bad_ticker", "fmv")]
    event = High("tick-high-AAPL-1", "AAPL", "tick", 1, NOW, 1.0, 0, NOW, NOW)
    assert decode(event_decoder, encoder.encode(event)) == event
    bad = msgspec.structs.asdict(event) | {"kind": "high", "ticker": ticker}
    rejection = decode(event_decoder, msgspec.msgpack.encode(bad))
    assert isinstance(rejection, Rejection) and "at `$.ticker`" in rejection.detail
    with pytest.raises(ValueError, match="matching regex"):
        High("tick-high-X-1", ticker, "tick", 1, NOW, 1.0, 0, NOW, NOW)
