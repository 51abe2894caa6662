"""The bench's side-by-side arithmetic (CPU per record, ratios, goals) on a small fixed results dict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import compare, report


def _step(rate: int, processed: int, cpu: dict[str, float], p99_us: int, kept_up: bool = True) -> dict[str, Any]:
    return {
        "offered": rate, "processed_per_s": processed, "cpu_percent": cpu, "kept_up": kept_up,
        "held": kept_up and p99_us < 5_000, "why_not": [] if kept_up else ["backlog grew"], "sent_per_s": rate,
        "tick_latency": {"count": 100, "p50_us": p99_us // 4, "p99_us": p99_us, "p99.9_us": p99_us * 2},
    }  # fmt: skip


BENCH = {"load": 12.0, "sink": 3.0}  # the bench's own processes: never counted
MESH: dict[str, Any] = {
    "max_sustained_per_s": 10_000, "max_kept_up_per_s": 100_000, "hold_s": 10,
    "steps": [
        # 20 + 8 + 10 + 1.5 + 0.5 = 40 % of a core for 10,000 records/s: 40 µs per record
        _step(10_000, 10_000, {"router": 20, "aggregator": 8, "worker.tick.0": 10, "worker.ohlcv.0": 1.5,
                               "supervisor.tick": 0.5, **BENCH}, 800),
        _step(100_000, 100_000, {"router": 40, "aggregator": 15, "worker.tick.0": 25, **BENCH}, 3_000),  # 8 µs
        _step(200_000, 150_000, {"router": 90, "aggregator": 30, "worker.tick.0": 60, **BENCH}, 40_000, False),
    ],
}  # fmt: skip
PEER: dict[str, Any] = {
    "max_sustained_per_s": 200_000, "max_kept_up_per_s": 200_000, "hold_s": 10,
    "steps": [
        _step(10_000, 10_000, {"peer": 25, **BENCH}, 400),  # 25 µs
        _step(100_000, 100_000, {"peer": 70, **BENCH}, 1_500),  # 7 µs
        _step(200_000, 200_000, {"peer": 100, **BENCH}, 2_500),  # 5 µs
    ],
}  # fmt: skip
RESULTS = {"meta": {}, "errors": {}, "sustained": {"mesh": MESH, "peer": PEER}}


def test_cpu_per_record_counts_every_process_of_the_system_and_none_of_the_bench() -> None:
    assert compare.cpu_us_per_record(MESH["steps"][0]) == 40.0
    assert compare.cpu_us_per_record(PEER["steps"][2]) == 5.0
    assert compare.cpu_us_per_record({**PEER["steps"][0], "processed_per_s": 0}) is None  # nothing processed
    assert compare.cpu_us_per_record(None) is None


def test_side_by_side_per_step_and_headline() -> None:
    data = compare.side_by_side(RESULTS)
    assert data is not None
    rows = {r["offered"]: r for r in data["cpu_per_record"]}
    assert sorted(rows) == [10_000, 100_000, 200_000]
    assert (rows[10_000]["mesh_us_per_record"], rows[10_000]["peer_us_per_record"], rows[10_000]["ratio"]) == (
        40.0, 25.0, 1.6,
    )  # fmt: skip
    assert rows[10_000]["mesh_cpu_percent"] == 40.0 and rows[10_000]["peer_cpu_percent"] == 25.0
    assert rows[100_000]["ratio"] == pytest.approx(8 / 7, abs=1e-3)
    assert rows[200_000]["both_kept_up"] is False  # the mesh fell behind there: not a like-for-like rate
    h = data["headline"]
    assert (h["held"]["mesh"], h["held"]["peer"], h["held"]["ratio"], h["held"]["met"]) == (
        10_000,
        200_000,
        0.05,
        False,
    )
    assert h["kept_up"]["ratio"] == 0.5
    assert h["tick_p99_us_at_10000"] == {"mesh": 800, "peer": 400, "ratio": 2.0, "goal": "mesh < 1 ms", "met": True}
    assert (h["tick_p99_us_at_100000"]["mesh"], h["tick_p99_us_at_100000"]["met"]) == (3_000, False)  # ≥ 2 ms
    # CPU per record is compared at the highest rate both kept up: 100,000/s, 8 vs 7 µs → 1.14 ≤ 1.15
    cpu = h["cpu_us_per_record"]
    assert (cpu["at"], cpu["mesh"], cpu["peer"], cpu["met"]) == (100_000, 8.0, 7.0, True)


def test_one_ramp_missing_means_no_side_by_side() -> None:
    assert compare.side_by_side({"sustained": {"mesh": MESH}}) is None
    assert compare.side_by_side({"sustained": {"mesh": MESH, "peer": {"error": "boom"}}}) is None
    assert compare.markdown(None) == []


def test_report_files_carry_the_side_by_side_figures(tmp_path: Path) -> None:
    paths = report.write(json.loads(json.dumps(RESULTS)), tmp_path)
    written = json.loads(paths["json"].read_text())
    assert written["side_by_side"]["headline"]["cpu_us_per_record"]["ratio"] == pytest.approx(1.143)
    target = next(t for t in written["targets"] if t["target"].startswith("mesh CPU per record"))
    assert (target["met"], target["goal"]) == (True, "≤ 1.15 ×")
    md = paths["md"].read_text()
    assert "## Mesh and single-process peer, side by side" in md
    assert (
        "| highest rate held (kept up and tick p99 < 5 ms) | 10,000/s | 200,000/s | 0.05 × | ≥ 1.5 × | **no** |" in md
    )
    assert "| tick p99 at 100,000/s | 3 ms | 1.5 ms | 2.00 × | mesh < 2 ms | **no** |" in md
    assert "| 10,000/s | 40 % | 40.00 µs | 25 % | 25.00 µs | 1.60 × |" in md
    assert "| 200,000/s | 180 % | 12.00 µs | 100 % | 5.00 µs | 2.40 × |" in md
