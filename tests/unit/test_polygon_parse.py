"""Polygon websocket messages → records: mapping, units, duplicates after a reconnect, malformed frames."""

from __future__ import annotations

import json
import random

import pytest

from feeds.polygon import backoff_delay
from feeds.polygon_wire import PolygonDecoder
from tickmesh.schema import Bar, FairMarketValue, Trade

MS = 1_712_306_654_208
NS = MS * 1_000_000


def trade(q: int, t: int = MS, **kw: object) -> dict:
    return {
        "ev": "T",
        "sym": "AAPL",
        "x": 4,
        "i": "9",
        "z": 3,
        "p": 170.5,
        "s": 100,
        "c": [12, 37],
        "t": t,
        "q": q,
    } | kw


def frame(*messages: object) -> str:
    return json.dumps(list(messages))


def test_trade_maps_every_field_and_ms_to_ns() -> None:
    result = PolygonDecoder().decode(frame(trade(42)))
    assert result.records == [Trade("AAPL", 170.5, 100.0, NS, 4, (12, 37), 42)]
    assert not result.errors and result.data == 1


def test_minute_and_second_aggregates_map_to_bars() -> None:
    am = {
        "ev": "AM",
        "sym": "MSFT",
        "v": 1200,
        "av": 99000,
        "op": 400.0,
        "vw": 410.6,
        "o": 410.2,
        "h": 411.0,
        "l": 410.0,
        "c": 410.9,
        "a": 408.1,
        "z": 12,
        "s": MS,
        "e": MS + 60_000,
    }
    second = dict(am, ev="A", s=MS, e=MS + 1_000)
    records = PolygonDecoder().decode(frame(am, second)).records
    assert records[0] == Bar("MSFT", 410.2, 411.0, 410.0, 410.9, 1200.0, NS, NS + 60 * 10**9, 410.6, 99000.0)
    assert records[1].end - records[1].start == 10**9  # type: ignore[union-attr]


@pytest.mark.parametrize("t", [NS, NS // 1_000, MS, MS / 1000])
def test_fmv_time_in_ns_as_documented_or_any_other_unit(t: float) -> None:
    records = PolygonDecoder().decode(frame({"ev": "FMV", "sym": "AAPL", "fmv": 171.0, "t": t})).records
    assert records == [FairMarketValue("AAPL", 171.0, NS)]


def test_statuses_are_returned_not_turned_into_records() -> None:
    result = PolygonDecoder().decode('[{"ev":"status","status":"connected","message":"Connected Successfully"}]')
    assert result.statuses == [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
    assert result.records == [] and result.data == 0


def test_replayed_trades_bars_and_fmv_are_dropped_after_a_reconnect() -> None:
    decoder = PolygonDecoder()
    bar = {"ev": "AM", "sym": "AAPL", "v": 1, "o": 1, "h": 2, "l": 1, "c": 2, "s": MS, "e": MS + 60_000}
    fmv = {"ev": "FMV", "sym": "AAPL", "fmv": 171.0, "t": NS}
    first = decoder.decode(frame(trade(1), trade(2), trade(3), bar, fmv)).records
    again = decoder.decode(frame(trade(2), trade(3), trade(4), bar, dict(bar, s=MS + 60_000, e=MS + 120_000), fmv))
    assert len(first) == 5
    assert [type(r).__name__ for r in again.records] == ["Trade", "Bar"]
    assert again.records[0].sequence == 4  # type: ignore[union-attr]
    assert decoder.counters["duplicates.T"] == 2
    assert decoder.counters["duplicates.AM"] == 1 and decoder.counters["duplicates.FMV"] == 1


def test_sequences_restart_on_a_new_day_and_per_ticker() -> None:
    decoder = PolygonDecoder()
    decoder.decode(frame(trade(500)))
    next_day = decoder.decode(frame(trade(1, t=MS + 86_400_000), trade(1, sym="MSFT")))
    assert len(next_day.records) == 2
    assert decoder.decode(frame(trade(499))).records == []  # yesterday, already past


def test_a_trade_without_sequence_is_never_taken_for_a_duplicate() -> None:
    decoder = PolygonDecoder()
    message = {k: v for k, v in trade(0).items() if k != "q"}
    assert len(decoder.decode(frame(message, message)).records) == 2


def test_malformed_frames_are_reported_with_reason_and_the_rest_flows() -> None:
    decoder = PolygonDecoder()
    assert decoder.decode("not json at all").errors[0].startswith("not JSON")
    assert decoder.decode("42").errors == ["expected an array of messages, got int"]
    assert decoder.decode("[" * 10_000 + "]" * 10_000).errors  # deep nesting is an error, not a crash
    mixed = decoder.decode(
        frame(
            trade(1),
            {"ev": "T", "sym": "AAPL", "p": -1, "s": 1, "t": MS, "q": 2},
            [1, 2],
            {"ev": "T", "sym": "AAPL", "p": 1, "s": 1, "t": "soon"},
            {"ev": "Q", "sym": "AAPL"},
            trade(3),
        )
    )
    assert [r.sequence for r in mixed.records] == [1, 3]  # type: ignore[union-attr]
    assert mixed.errors == [
        "message 1 (T): price: Expected `float` > 0.0",
        "message 2: not an object with an `ev` field",
        "message 3 (T): t: not a number: 'soon'",
    ]
    assert decoder.counters["rejected.T"] == 2 and decoder.counters["ignored.Q"] == 1
    assert decoder.counters["rejected.malformed_frame"] == 3


def test_a_single_message_object_is_accepted_as_a_frame() -> None:
    assert len(PolygonDecoder().decode(json.dumps(trade(1))).records) == 1


def test_bad_bar_and_missing_fields() -> None:
    decoder = PolygonDecoder()
    inverted = {"ev": "AM", "sym": "X", "v": 1, "o": 5, "h": 4, "l": 1, "c": 2, "s": MS, "e": MS + 60_000}
    missing = {"ev": "AM", "sym": "X", "v": 1, "o": 1, "h": 2, "l": 1, "c": 2, "e": MS}
    errors = decoder.decode(frame(inverted, missing)).errors
    assert "low <= open, close <= high" in errors[0]
    assert errors[1] == "message 1 (AM): s: expected a number, got NoneType"


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 30.0, rng) for a in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 30.0 and delays[-1] >= 15.0
    assert len({round(backoff_delay(3, 0.5, 30.0, rng), 6) for _ in range(20)}) > 1  # jittered
    assert backoff_delay(10_000, 0.5, 30.0, rng) <= 30.0  # no overflow for long outages
