"""TICK state layout: the compact trend and surge rings stay exact, their size, and the rows of older versions."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import msgspec
import pytest

from bench import state as state_bench
from tests.unit.test_detectors_property import as_dicts, reference_tick, run
from tickmesh.config import TickChannel, TickRules
from tickmesh.schema import Trade, check_ticker
from workers import tick_rows
from workers.snapshot import export_changes
from workers.tick_rules import TickDetector
from workers.tick_state import BEFORE, HI, LAST, P3, PB, TB, TickState, state, surge_price, surge_volume

S = 1_000_000_000
T0 = 1_700_006_400 * S + 14 * 3_600 * S  # 14:00 UTC, inside the day's session
V3_SNAPSHOT = Path(__file__).with_name("data") / "tick_v3.snapshot"  # warm(det), written by the version-3 code
V4_SNAPSHOT = Path(__file__).with_name("data") / "tick_v4.snapshot"  # warm(det), written by the version-4 code
V4_MIXED = Path(__file__).with_name("data") / "tick_v4_mixed.snapshot"  # warm(det, "WARM"), then mixed()
V5_MIXED = Path(__file__).with_name("data") / "tick_v5_mixed.snapshot"  # the same, by the version-5 code


def walk(n: int, every_s: float, exact_until: int, vol: float = 0.004, seed: int = 7) -> list[Trade]:
    """A random walk with trends and surges; prices are whole ten-thousandths only before `exact_until`."""
    rnd, price, out = random.Random(seed), 100.0, []
    for k in range(n):
        jump = (0.03 if k % 194 == 50 else -0.03 if k % 194 == 147 else 0.0) + rnd.gauss(0, vol)
        price = max(1.0, round(price * (1 + jump), 4))
        odd = price + 1e-7 if k >= exact_until else price  # not a whole number of ten-thousandths
        out.append(Trade("A", odd, float(rnd.randrange(1, 500)), T0 + round(k * every_s * S)))
    return out


def warm(det: TickDetector, ticker: str = "A") -> None:
    """The benchmark's warm symbol: a trade in every trend bucket for 600 s, then in every surge slot for 5 s."""
    times = [k * 5 * S for k in range(120)] + [600 * S + k * S // 4 for k in range(20)]
    for k, t in enumerate(times):
        det.process(Trade(ticker, 100.0 + 0.01 * (k % 7), 100.0, T0 + t), 0, 0, 0)


@pytest.mark.parametrize(
    ("vol", "exact_until", "typecode"),
    [(0.0005, 10_000, "h"), (0.004, 10_000, "i"), (0.004, 400, "d"), (0.0005, 0, "d")],
)
def test_the_trend_ring_is_exact_in_every_encoding(vol: float, exact_until: int, typecode: str) -> None:
    """int16 ticks around a base (re-centred as prices move), int32 ticks, doubles: the same events."""
    rules = TickRules(trend_min_history_s=30.0, trend_threshold=0.2, surge_cooldown_s=5.0)
    trades = walk(1_200, 1.3, exact_until, vol)
    det, events, bases = TickDetector(TickChannel(rules=rules)), [], set()
    for i, tr in enumerate(trades):
        events += det.process(tr, i, 0, 0)
        bases.add(det.states["A"][PB])
    got = as_dicts(events)
    assert got == reference_tick(rules, trades)
    assert {e["kind"] for e in got} >= {"trend", "surge", "high", "low"}
    assert det.states["A"].tr.typecode == typecode
    assert typecode != "h" or len(bases) > 3  # the int16 ring was re-centred as prices moved


def test_the_ring_goes_back_to_int16_when_its_windows_start_over() -> None:
    det = TickDetector(TickChannel())
    run(det, walk(50, 2.0, 0))
    assert det.states["A"].tr.typecode == "d"
    run(det, [Trade("A", 101.25, 1.0, T0 + 2_000 * S)])  # more than trend_window3_s later
    st = det.states["A"]
    assert st.tr.typecode == "h" and st.tr[int(st[TB]) % det.tcap] + st[PB] == 1_012_500


def test_a_warm_ticker_fits_its_budget() -> None:
    det = TickDetector(TickChannel())
    warm(det)
    st = det.states["A"]
    size = sys.getsizeof(st) + sys.getsizeof(st.tr) + sys.getsizeof(st.sr)
    assert len(st.tr) == det.tcap + det.cw and len(st.sr) == 2 * det.scap  # every window full
    assert st.tr.typecode == "h" and st.sr.typecode == "q"
    assert size <= 1_290  # the state with its scalars and volume ring 464, trend ring and counts 394, surge ring 432
    assert len(det.row("A") or b"") <= 1_080


def test_a_version_2_row_keeps_the_session_and_restarts_the_windows() -> None:
    channel = TickChannel(rules=TickRules(trend_enabled=False, surge_enabled=False))
    det = TickDetector(channel)
    warm(det)
    old = det.states["A"]
    v4 = msgspec.msgpack.decode(V4_SNAPSHOT.read_bytes())[1]["A"]  # the same ticker, written by version 4
    day, scalars = msgspec.msgpack.decode(v4)[:2]  # version 4 scalars: version 2's and PB
    header = msgspec.msgpack.encode(tick_rows.TickHeader(2, det.layout, det.offset_ns, det.ignored))
    row = msgspec.msgpack.encode((day, scalars[: 40 * 8], b"\x00" * 24, b"\x00" * 24))
    fresh = TickDetector(channel)
    fresh.restore_rows(header, [("A", row)])
    st = fresh.states["A"]
    assert st[HI] == old[HI] and st[LAST] == old[LAST] and st.day == old.day
    assert st.tr.tolist() == [] and st.sr.tolist() == [] and len(st) == fresh.size
    later = [Trade("A", 100.2, 1.0, T0 + 700 * S), Trade("A", 99.5, 1.0, T0 + 701 * S)]
    events = run(fresh, later)
    assert len(events) == 2 and events == run(det, later)  # a high and a low against the kept session


@pytest.mark.parametrize(("field", "change"), [(TB, 10_000), (LAST, 1_000 * S), (P3, -200), (PB, 0.5)])
def test_a_row_whose_trend_ring_does_not_fit_is_refused(field: int, change: float) -> None:
    """The newest bucket must be the last trade's, with trades (each window's first is found by a
    scan that ends there), the largest window's first inside the ring, its base whole ticks."""
    det = TickDetector(TickChannel())
    warm(det)
    st = det.states["A"]
    bad = state(st.day, st, st.tr, st.sr, st.tdir)
    bad[field] += change
    with pytest.raises(ValueError, match="snapshot"):
        det.restore_rows(det.header(), [("A", tick_rows.row(bad))])
    assert det.states["A"] is st


def test_the_state_bench_reports_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(300):  # the process's table of checked tickers, grown by earlier tests, must not grow here:
        check_ticker(f"T{i:06d}")  # at 200 symbols one resize of it would add hundreds of bytes to each
    assert state_bench.main(["--symbols", "200,300"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 1_000 < out["traced_bytes_per_symbol"] <= 2_300  # the TickState and its arrays, its dict entry and key
    assert sum(out["warm_symbol_arrays"].values()) <= 1_290 and out["row_bytes"] <= 1_080


@pytest.mark.parametrize("path", ["batches", "store"])
def test_the_state_bench_reports_the_shard_path(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert state_bench.main(["--symbols", "20,40", "--through", path]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["through"] == path and {"rss_bytes_per_symbol_first_20", "rss_bytes_per_symbol_20_to_40"} <= set(out)


def test_the_state_bench_reports_cpu_per_record() -> None:
    out = state_bench.cpu(symbols=20, frames=10)
    assert set(out) == {f"{k}_cpu_ns_per_record" for k in ("history", "slots", "steady")}
    assert all(v > 0 for v in out.values())


def sized(trades: list[Trade], size: float, since: int) -> list[Trade]:
    """The same trades, each of `size` from the `since`-th on."""
    return [Trade(t.ticker, t.price, size if k >= since else t.size, t.timestamp) for k, t in enumerate(trades)]


SURGE_FORMS = {  # trades -> the surge ring's form at the end
    "packed": (walk(1_200, 1.3, 10_000), "q"),
    "a price not in ticks": (walk(1_200, 1.3, 600), "d"),
    "a fractional size": (sized(walk(1_200, 1.3, 10_000), 2.5, 600), "d"),
    "the volume past 2**32": (sized(walk(1_200, 1.3, 10_000), 4e7, 600), "d"),
    "a price past 2**31 ticks": (
        [Trade("A", t.price * 2_500, t.size, t.timestamp) for t in walk(1_200, 1.3, 10_000)],
        "d",
    ),
}


@pytest.mark.parametrize("form", SURGE_FORMS)
def test_the_surge_ring_is_exact_in_every_form_and_through_a_checkpoint(form: str) -> None:
    """Packed while every price is in ticks and every volume a whole number below 2**32, else three
    doubles from the first entry that is not: the same events as the reference, restored mid-way too."""
    trades, typecode = SURGE_FORMS[form]
    rules = TickRules(trend_min_history_s=30.0, trend_threshold=0.2, surge_cooldown_s=5.0)
    det = TickDetector(TickChannel(rules=rules))
    events, forms = run(det, trades[:900]), {det.states["A"].sr.typecode}
    assert (forms == {"q"}) == (typecode == "q")
    restored = TickDetector(TickChannel(rules=rules))
    restored.restore(det.snapshot())
    assert restored.states["A"].sr == det.states["A"].sr
    tail = [e for i, tr in enumerate(trades[900:], 900) for e in restored.process(tr, i, 0, 0)]
    got = as_dicts(events + tail)
    assert got == reference_tick(rules, trades)
    assert "surge" in {e["kind"] for e in as_dicts(tail)}  # read from the ring in its final form
    assert restored.states["A"].sr.typecode == typecode


def test_the_surge_ring_is_packed_again_in_a_new_session() -> None:
    det = TickDetector(TickChannel())
    run(det, sized(walk(50, 2.0, 10_000), 0.5, 0))
    assert det.states["A"].sr.typecode == "d"
    run(det, [Trade("A", 101.25, 1.0, T0 + 86_400 * S)])
    sr = det.states["A"].sr
    assert sr.typecode == "q" and (surge_price(sr, 0), surge_volume(sr, 0)) == (101.25, 1.0)


@pytest.mark.parametrize(("snapshot", "form"), [(V3_SNAPSHOT, "d"), (V4_SNAPSHOT, "q")])
def test_a_version_3_or_4_snapshot_restores_whole(snapshot: Path, form: str) -> None:
    """A checkpoint of the version-3 code (surge ring as doubles) or the version-4 code (the session's
    count before each bucket after the scalars) keeps every window: the same state and the same
    events as a ticker warmed by this code."""
    det, old, again = TickDetector(TickChannel()), TickDetector(TickChannel()), TickDetector(TickChannel())
    warm(det)
    old.restore(snapshot.read_bytes())
    again.restore(det.snapshot())  # restored alike: a restore recomputes the cached gates
    st, new = old.states["A"], again.states["A"]
    assert st.sr.typecode == form and new.sr.typecode == "q"
    assert (st, st.tdir, st.tr, st.day) == (new, new.tdir, new.tr, new.day)
    assert [(surge_price(st.sr, i), surge_volume(st.sr, i)) for i in range(det.scap)] == [
        (surge_price(new.sr, i), surge_volume(new.sr, i)) for i in range(det.scap)
    ]
    later = [Trade("A", 100.0 + 0.5 * k, 50.0, T0 + 606 * S + k * S) for k in range(8)]
    events = run(old, later)
    assert events == run(det, later) and "surge" in {e["kind"] for e in as_dicts(events)}


def test_rows_of_an_older_version_are_written_again_at_the_next_checkpoint() -> None:
    """An incremental checkpoint after the upgrade rewrites every row, so the store never holds
    version-3 rows under a version-4 header."""
    det = TickDetector(TickChannel())
    det.restore(V3_SNAPSHOT.read_bytes())
    changes = export_changes(det)
    assert set(changes.rows) == {"A"} and tick_rows.read_header(changes.header).v == tick_rows.VERSION
    again = TickDetector(TickChannel())
    again.restore_rows(changes.header, [(t, r) for t, r in changes.rows.items() if r is not None])
    assert again.states["A"] == det.states["A"] and again.states["A"].sr.typecode == "d"
    assert not export_changes(again).rows  # rows of this version: nothing to write again


@pytest.mark.parametrize("trades_before", [39_998, 39_997])
def test_trade_counts_past_int16_widen_the_ring_and_stay_exact(trades_before: int) -> None:
    """A bucket of more trades than int16 holds: the trend ring array widens to int32, and the smallest
    window's count is exact to the trade, through a checkpoint too (40,000 needed here)."""
    rules = TickRules(trend_min_trades=40_000, trend_min_history_s=1.0, trend_threshold=0.3)
    crowd = [Trade("A", 100.0, 1.0, T0 + k * 100_000) for k in range(trades_before)]  # all in 5 s
    later = [Trade("A", 103.0, 1.0, T0 + 6 * S)]
    det = TickDetector(TickChannel(rules=rules))
    run(det, crowd + [Trade("A", 100.0, 1.0, T0 + 5 * S + 1)])  # the crowd's bucket ends
    assert det.states["A"].tr.typecode == "i"
    restored = TickDetector(TickChannel(rules=rules))
    restored.restore(det.snapshot())
    for detector in (det, restored):
        kinds = {e["kind"] for e in as_dicts(run(detector, later))}
        assert ("trend" in kinds) == (trades_before + 2 >= 40_000)


def mixed() -> list[Trade]:
    """Tickers in every phase of their rings (V4_MIXED holds them as the version-4 code left them)."""
    out = [Trade("FEW", 10.0 + 0.01 * k, 5.0, T0 + k * 7 * S) for k in range(6)]  # rings still filling
    out += [Trade("GAPS", 20.0 + 0.02 * k, 3.0, T0 + k * 37 * S) for k in range(30)]  # empty buckets between
    out += [Trade("ODD", t.price + 1e-7, t.size, t.timestamp) for t in walk(300, 1.3, 0)]  # doubles everywhere
    out += [Trade("WIDE", 5.0 + k, 2.0, T0 + k * 4 * S) for k in range(40)]  # int32 ticks
    return sorted(out, key=lambda t: t.timestamp)


@pytest.mark.parametrize("snapshot", [V4_MIXED, V5_MIXED])
def test_an_older_snapshot_of_rings_in_every_phase_restores_whole(snapshot: Path) -> None:
    """Filling, full, with gaps, as int32 and as doubles: each ticker restored from the version-4 or
    version-5 code's checkpoint has the state (the trend's direction, the volume ring's marks before
    its first bucket) and gives the events of the same ticker fed by this code."""
    det, old, again = TickDetector(TickChannel()), TickDetector(TickChannel()), TickDetector(TickChannel())
    warm(det, "WARM")
    run(det, mixed())
    old.restore(snapshot.read_bytes())
    again.restore(det.snapshot())
    assert set(old.states) == {"WARM", "FEW", "GAPS", "ODD", "WIDE"} == set(again.states)
    for ticker, st in old.states.items():
        new = again.states[ticker]
        assert (st.day, st, st.tdir, st.tr, st.sr) == (new.day, new, new.tdir, new.tr, new.sr), ticker
    later = [Trade(t, p, 400.0, T0 + 1_300 * S + k * S // 2) for k in range(30) for t, p in
             (("FEW", 10.5 + k / 20), ("GAPS", 21.5 - k / 10), ("ODD", 99.0 + k / 7), ("WIDE", 44.0 + k))]  # fmt: skip
    assert old.states["ODD"].tdir == 1 and BEFORE in old.states["FEW"]
    events = run(old, later)
    assert events == run(again, later) and len(events) > 10


def test_a_restored_state_takes_the_bytes_of_a_live_one() -> None:
    """Rows are read into arrays without spare room: a restart does not grow the state of a ticker
    (a surge ring still filling has room to grow in the live one)."""
    det, again = TickDetector(TickChannel()), TickDetector(TickChannel())
    warm(det, "WARM")
    run(det, mixed())
    again.restore(det.snapshot())

    def sizes(st: TickState) -> list[int]:
        return [sys.getsizeof(x) for x in (st, st.tr, st.sr)]

    assert sizes(again.states["WARM"]) == sizes(det.states["WARM"]) == [464, 394, 432]
    for ticker, st in det.states.items():
        assert all(a <= b for a, b in zip(sizes(again.states[ticker]), sizes(st), strict=True)), ticker
