"""OHLCV rules, hand-worked: big move, close at high/low, volume surge, trend runs, windows, snapshots."""

from __future__ import annotations

import sys
from array import array
from typing import Any

import pytest

from tickmesh.config import OhlcvChannel, OhlcvRules
from tickmesh.schema import Bar, BigMove, Event, High, Low, Trade, Trend, VolumeSurge
from workers.ohlcv_rules import OhlcvDetector

S = 1_000_000_000
T0 = 1_700_006_400 * S


def bar(
    o: float,
    c: float,
    k: int = 1,
    hi: float | None = None,
    lo: float | None = None,
    volume: float = 100.0,
    ticker: str = "AAA",
    minutes: int = 1,
) -> Bar:
    end = T0 + k * minutes * 60 * S
    return Bar(
        ticker,
        o,
        max(o, c) if hi is None else hi,
        min(o, c) if lo is None else lo,
        c,
        volume,
        end - minutes * 60 * S,
        end,
    )


def detector(**rules: Any) -> OhlcvDetector:
    return OhlcvDetector(OhlcvChannel(rules=OhlcvRules(**rules)))


def run(det: OhlcvDetector, bars: list[Bar]) -> list[Event]:
    return [e for i, b in enumerate(bars) for e in det.process(b, i, i + 1, i + 2)]


def kinds(events: list[Event]) -> list[str]:
    return [str(e.__struct_config__.tag) for e in events]


# -- big move ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("o", "c", "fires"),
    [
        (100.0, 102.0, False),
        (100.0, 102.01, True),
        (100.0, 101.99, False),
        (100.0, 98.0, False),
        (100.0, 97.99, True),
        (10.0, 10.2, False),
        (10.0, 10.21, True),
    ],
)
def test_big_move_is_strictly_above_the_threshold(o: float, c: float, fires: bool) -> None:
    # wicks above and below so no close-at-extreme event muddies the picture
    events = run(detector(), [bar(o, c, hi=max(o, c) + 1, lo=min(o, c) - 1)])
    assert kinds(events) == (["big_move"] if fires else [])
    if fires:
        move = events[0]
        assert isinstance(move, BigMove)
        assert move.direction == ("up" if c > o else "down") and move.pct == pytest.approx((c - o) / o * 100)


def test_bar_event_envelope() -> None:
    (event,) = OhlcvDetector(OhlcvChannel(priority=5)).process(bar(100.0, 103.0, hi=104.0), 7, 8, 9)
    end = T0 + 60 * S
    assert event.id == f"ohlcv:big_move:AAA:{end}" and event.source == "ohlcv" and event.priority == 5
    assert (event.time, event.price, event.record_seq, event.ingest_ns, event.detected_ns) == (end, 103.0, 7, 8, 9)


# -- close at high / low ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("o", "c", "hi", "lo", "expected"),
    [
        (100.0, 101.0, 101.0, 99.5, ["high"]),  # exactly 1 %, closes at the high
        (100.0, 100.99, 100.99, 99.5, []),  # 0.99 %
        (100.0, 101.01, 101.01, 100.0, ["high"]),
        (100.0, 101.0, 101.5, 99.5, []),  # 1 % but below the high
        (100.0, 99.0, 100.5, 99.0, ["low"]),  # -1 %, closes at the low
        (100.0, 99.01, 100.5, 99.01, []),
        (100.0, 100.0, 100.0, 100.0, []),  # flat bar: high == low
        (10.0, 10.1, 10.1, 10.0, ["high"]),  # 0.99999… % in binary: counts as 1 %
        (100.0, 102.5, 102.5, 100.0, ["big_move", "high"]),
    ],
)
def test_close_at_extreme(o: float, c: float, hi: float, lo: float, expected: list[str]) -> None:
    events = run(detector(), [bar(o, c, hi=hi, lo=lo)])
    assert kinds(events) == expected
    for e in events:
        if isinstance(e, (High, Low)):
            assert e.pct == pytest.approx((c - o) / o * 100) and e.previous is None and e.count is None


def test_flat_bars_never_close_at_an_extreme() -> None:
    # high == low: even a (validated) flat bar with open == close gives nothing
    assert run(detector(close_at_extreme_pct=0.0), [bar(5.0, 5.0, k) for k in range(1, 4)]) == []


# -- volume surge --------------------------------------------------------------------------------
def flat_bars(n: int, volume: float = 100.0, start: int = 1) -> list[Bar]:
    return [bar(100.0, 100.0, k, hi=100.5, lo=99.5, volume=volume) for k in range(start, start + n)]


@pytest.mark.parametrize(("volume", "fires"), [(300.0, False), (300.01, True), (299.99, False), (1000.0, True)])
def test_volume_surge_is_strictly_above_three_times_the_mean(volume: float, fires: bool) -> None:
    events = run(detector(), [*flat_bars(5), bar(100.0, 100.0, 6, hi=100.5, lo=99.5, volume=volume)])
    assert kinds(events) == (["volume_surge"] if fires else [])
    if fires:
        surge = events[0]
        assert isinstance(surge, VolumeSurge)
        assert (surge.volume, surge.average) == (volume, 100.0) and surge.ratio == pytest.approx(volume / 100)


def test_volume_surge_needs_five_previous_bars() -> None:
    assert run(detector(), [*flat_bars(4), bar(100.0, 100.0, 5, hi=100.5, lo=99.5, volume=10_000.0)]) == []
    assert kinds(run(detector(), [*flat_bars(5), bar(100.0, 100.0, 6, hi=100.5, lo=99.5, volume=10_000.0)])) == [
        "volume_surge"
    ]


def test_volume_mean_is_over_up_to_ten_previous_bars() -> None:
    # 5 bars of 1000 then 10 of 100: the mean of the last 10 is 100, so 301 surges
    bars = [
        *flat_bars(5, 1000.0),
        *flat_bars(10, 100.0, start=6),
        bar(100.0, 100.0, 16, hi=100.5, lo=99.5, volume=301.0),
    ]
    (event,) = run(detector(), bars)
    assert isinstance(event, VolumeSurge) and event.average == 100.0
    # with 7 bars of 100 after the 1000s, the mean of the last 10 is (3 * 1000 + 7 * 100) / 10 = 370
    bars = [
        *flat_bars(5, 1000.0),
        *flat_bars(7, 100.0, start=6),
        bar(100.0, 100.0, 13, hi=100.5, lo=99.5, volume=1110.0),
    ]
    assert run(detector(), bars) == []  # exactly 3 x 370
    bars[-1] = flat_bars(1, 1111.0, start=13)[0]
    assert kinds(run(detector(), bars)) == ["volume_surge"]


def test_zero_average_volume_is_no_surge() -> None:
    assert run(detector(), [*flat_bars(5, 0.0), bar(100.0, 100.0, 6, hi=100.5, lo=99.5, volume=5.0)]) == []


# -- trend (off by default) ---------------------------------------------------------------------
def closes(values: list[float], start: int = 1) -> list[Bar]:
    return [bar(c, c, k, hi=c + 1, lo=c - 1) for k, c in enumerate(values, start)]


def test_trend_is_off_by_default() -> None:
    assert run(detector(), closes([100, 100.3, 100.6, 100.9, 101.2])) == []


def test_trend_fires_once_per_run_of_five_strict_closes() -> None:
    det = detector(detect_trends=True)
    events = run(det, closes([100, 100.3, 100.6, 100.9, 101.0, 101.5, 102.0]))
    (event,) = events  # 100 -> 101.0 is exactly 1 %: fires on the fifth close; not again while the run lasts
    assert isinstance(event, Trend) and event.direction == "up" and event.pct == pytest.approx(1.0)
    assert event.time == T0 + 5 * 60 * S and event.score is None


def test_trend_needs_one_percent_over_the_last_five() -> None:
    det = detector(detect_trends=True)
    assert run(det, closes([100, 100.2, 100.4, 100.6, 100.99])) == []  # 0.99 %
    assert run(det, closes([101.1], start=6)) == []  # the last five: 100.2 -> 101.1 is 0.898 %
    (event,) = run(det, closes([101.5], start=7))  # 100.4 -> 101.5 is 1.096 %: the same run fires late
    assert isinstance(event, Trend) and event.pct == pytest.approx((101.5 - 100.4) / 100.4 * 100)


def test_trend_breaks_on_a_flat_or_reversed_close() -> None:
    det = detector(detect_trends=True)
    assert run(det, closes([100, 101, 102, 102, 103, 104])) == []  # the flat close restarts the run
    down = run(det, closes([103, 102, 101, 100], start=7))  # 104 -> 100: five falling closes
    assert [(e.direction, round(e.pct, 6)) for e in down] == [("down", round(-4 / 104 * 100, 6))]  # type: ignore[union-attr,arg-type]
    up = run(det, closes([101, 102, 103, 104, 105], start=11))  # 100 -> 105, a new run
    assert [e.direction for e in up] == ["up"]  # type: ignore[union-attr]


# -- windows, order, switches, snapshots -----------------------------------------------------------
def test_windows_carry_across_sessions_and_out_of_order_bars_are_ignored() -> None:
    det = detector()
    daily = [bar(100.0, 100.0, k, hi=101, lo=99, volume=100.0, minutes=1440) for k in range(1, 6)]
    assert run(det, daily) == []
    late = bar(100.0, 100.0, 3, hi=101, lo=99, volume=10_000.0, minutes=1440)
    assert run(det, [late]) == [] and det.ignored["out_of_order"] == 1
    assert kinds(run(det, [bar(100.0, 100.0, 6, hi=101, lo=99, volume=301.0, minutes=1440)])) == ["volume_surge"]


def test_other_records_and_disabled_rules() -> None:
    assert detector().process(Trade("AAA", 1.0, 1.0, T0), 0, 0, 0) == []
    assert run(detector(enabled=False), [bar(100.0, 110.0)]) == []


def test_configure_resizes_windows_keeping_the_newest() -> None:
    det = detector()
    run(det, [*flat_bars(5, 1000.0), *flat_bars(5, 100.0, start=6)])
    det.configure(OhlcvChannel(rules=OhlcvRules(volume_window=5, volume_surge_ratio=2.0)))
    (event,) = run(det, [bar(100.0, 100.0, 11, hi=100.5, lo=99.5, volume=201.0)])
    assert isinstance(event, VolumeSurge) and event.average == 100.0 and len(det.states["AAA"].vols) == 5


def test_snapshot_round_trip() -> None:
    bars = [
        bar(100.0 + k % 7, 100.0 + (k * 3) % 7, k, hi=108.0, lo=99.0, volume=100.0 + (k * 37) % 500)
        for k in range(1, 200)
    ]
    whole = run(detector(detect_trends=True), bars)
    first = detector(detect_trends=True)
    head = run(first, bars[:77])
    second = detector(detect_trends=True)
    second.restore(first.snapshot())
    tail = [e for i, b in enumerate(bars[77:], 77) for e in second.process(b, i, i + 1, i + 2)]
    assert head + tail == whole and len(whole) > 5
    with pytest.raises(ValueError, match="snapshot"):
        second.restore(b"\x93\x01\x80\x81\xa1A\x97\x00\x00\x05\xc4\x00\xc4\x00\x00\xc2")  # empty windows
    assert len(second.states) == 1


def test_windows_have_no_spare_room_live_resized_or_restored() -> None:
    """Each window array holds its slots and no more (from bytes, an array keeps a sixteenth and
    three slots spare: 48 bytes a ticker at the default sizes)."""

    def spare(det: OhlcvDetector) -> list[int]:
        st = det.states["AAA"]
        return [sys.getsizeof(x) - sys.getsizeof(array("d", x.tolist())) for x in (st.vols, st.closes)]

    first, second = detector(), detector()
    run(first, [bar(100.0, 101.0, k) for k in range(1, 4)])
    second.restore(first.snapshot())
    assert spare(first) == spare(second) == [0, 0]
    second.configure(OhlcvChannel(rules=OhlcvRules(volume_window=7)))
    assert spare(second) == [0, 0]


def test_a_gap_of_more_than_session_gap_bars_starts_the_windows_over() -> None:
    quiet = [bar(100.0, 100.1, k) for k in range(1, 11)]  # ten bars of volume 100
    surge_after = [bar(100.0, 100.1, 12, volume=400.0)]  # one bar later: a volume surge
    next_session = [bar(100.0, 100.1, 30, volume=400.0)]  # 18 bars later: a new session's first bar
    det = detector(session_gap_bars=10)
    run(det, quiet)
    assert kinds(run(det, surge_after)) == ["volume_surge"]
    assert kinds(run(det, next_session)) == []  # judged against nothing, not against the old session
    daily = detector(session_gap_bars=10)
    run(daily, quiet)
    assert kinds(run(daily, [bar(100.0, 100.1, 20, volume=400.0)])) == ["volume_surge"]  # a gap of 9: same session
