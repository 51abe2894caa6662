"""The benchmark harness at tiny scale: it starts the real processes, drives them, stops them, writes a full report.

No timing assertions: only that every part ran, every figure has its place, and nothing was left running.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import uuid
from pathlib import Path

import psutil
import pytest

from bench import app
from bench.checkpoint import measure
from bench.dedup import DedupPlan, judge
from bench.ramp import growing, judge_step
from bench.workload import NS, Mix, Workload
from tests.mesh import poll_until
from tickmesh.sched import CPU_LATENCY

TINY = [
    "--quick", "--duration", "1", "--hold", "1", "--settle", "0.3", "--steps", "2000,4000", "--flat-out", "1",
    "--memory-symbols", "20,60", "--dedup-tickers", "4", "--scale", "0.01", "--tick-rate", "300",
    "--flood-rate", "2000", "--journal-events", "2000", "--set", "control.status_interval_s=0.2",
    "--set", "aggregator.heartbeat_s=0.2",
]  # fmt: skip


MARK = "TICKMESH_TEST_RUN"


def _started_by(run: str) -> list[psutil.Process]:
    """Processes that inherited this run's mark in their environment: what this test started, even if
    they outlived their parent, and nothing another test or another bench on the machine started."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get(MARK) == run:
                found.append(proc)
    return found


@pytest.mark.slow
@pytest.mark.timeout(360)  # ~50 s here: ten stages of ~9 processes each; a slow host must not fail it
def test_tiny_run_writes_a_complete_report_and_leaves_nothing_running(tmp_path: Path, monkeypatch) -> None:
    run = uuid.uuid4().hex
    monkeypatch.setenv(MARK, run)  # every process the bench starts inherits it
    code = app.main(["--out", str(tmp_path), *TINY])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["errors"] == {}, report["errors"]
    assert code == 0
    assert set(report) >= {
        "meta",
        "plan",
        "scenarios",
        "isolation",
        "dedup",
        "ceiling",
        "sustained",
        "memory",
        "journal",
        "hop",
        "targets",
    }
    assert set(report["meta"]) >= {"date", "cpu_model", "cores", "command", "python_speed_start", "python_speed_end"}
    for name in ("market_open_surge", "steady_state"):
        scenario = report["scenarios"][name]
        assert scenario["records_processed"] >= scenario["records_sent"] > 0
        assert set(scenario) >= {"tick_latency", "ohlcv_symbols_processed_per_min", "rss_mb", "rss_total_mb"}
        assert scenario["rss_total_mb"] > 0
    for system in ("mesh", "peer"):
        ramp = report["sustained"][system]
        assert ramp["steps"] and {"offered", "held", "tick_latency", "cpu_percent"} <= set(ramp["steps"][0])
    assert report["ceiling"]["raw_ceiling"]["delivered_per_s"] > 0
    assert report["ceiling"]["pass_through_mesh"]["processed_per_s"] > 0
    assert {"without_flood", "with_flood"} <= set(report["isolation"])
    assert report["dedup"]["distinct_expected"] > 0 and "all_duplicates_suppressed" in report["dedup"]
    assert {"tick", "ohlcv", "fmv"} <= set(report["memory"])
    assert report["journal"]["sqlite"]["stored"] == 2_000 and report["journal"]["sqlite"]["events_per_s"] > 0
    cost = report["journal"]["mesh"]
    assert cost["with_journal_p99_us"] and len(cost["with_journal_p99_us"]) == len(cost["without_journal_p99_us"])
    assert cost["journal"]["stored"] > 0 and cost["journal"]["lost"] == 0
    placements = ["anywhere", "one_cpu"] + (["idle_cpus_poll"] if os.access(CPU_LATENCY, os.W_OK) else [])
    for placement in placements:  # what one message costs the process it wakes
        hop = report["hop"][placement]
        assert hop["cpu_us_per_message"] > 0 and hop["sleeps_per_message"] > 0
        assert 0 < hop["round_trip_p50_us"] <= hop["round_trip_p99_us"]
    assert len(report["targets"]) >= 8
    markdown = (tmp_path / "report.md").read_text()
    assert "## Targets" in markdown and "Sustained throughput: mesh" in markdown and "## One hop" in markdown
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latency.png").stat().st_size > 1_000
    else:
        assert "not drawn" in report["chart"]
    try:
        poll_until(lambda: not _started_by(run), 5, interval=0.1, what="the bench's processes to end")
    except AssertionError:
        raise AssertionError([" ".join(p.cmdline()) for p in _started_by(run)]) from None


# -- the pure parts the report rests on -------------------------------------------------------------
def test_planned_highs_pass_the_default_gate_and_nothing_else_moves_the_levels() -> None:
    mix = Mix(tick_symbols=3, ohlcv_symbols=5, fmv_symbols=1, trade_share=0.8, fmv_share=0.05, high_every_s=1.2)
    workload = Workload(mix)
    highs: dict[str, list[tuple[int, float]]] = {}
    levels: dict[str, tuple[float, float]] = {}
    t = 1_800_000_000 * NS
    for _ in range(200):  # 20 s of event time, 50 ms apart
        for record in workload.records(10, t):
            if record[0] != "T":
                continue
            _, ticker, price, _, ts = record
            if ticker not in levels:
                levels[ticker] = (price, price)
                continue
            high, low = levels[ticker]
            assert price >= low
            if price > high:
                highs.setdefault(ticker, []).append((ts, price))
                assert price - high >= min(0.0005 * high, 0.10) and 100 <= price < 500
                levels[ticker] = (price, low)
        t += NS // 20
    assert set(highs) == set(levels) and workload.counts["planned_highs"] == sum(map(len, highs.values()))
    for series in highs.values():
        assert all(b[0] - a[0] >= NS for a, b in zip(series, series[1:], strict=False))


def test_bars_are_valid_and_in_order_per_symbol() -> None:
    workload = Workload(Mix(tick_symbols=0, ohlcv_symbols=7, fmv_symbols=0, trade_share=0.0, fmv_share=0.0))
    last_end: dict[str, int] = {}
    for k in range(50):
        for _, ticker, o, h, lo, c, v, start, end in workload.bars(20, 1_800_000_000 * NS + k):
            assert lo <= min(o, c) and max(o, c) <= h and start < end and v > 0
            assert start >= last_end.get(ticker, 0)
            last_end[ticker] = end


def test_a_step_is_held_only_when_every_condition_holds() -> None:
    load = {"behind_s": 0.0}
    window = {"rates": {"tick.processed": 9_900.0}, "deltas": {}}
    fast = {"count": 100, "p99_us": 800}
    flat = [0.0] * 8
    assert judge_step(10_000, load, window, flat, fast, fast) == (True, True, [])
    assert judge_step(10_000, {"behind_s": 2.0}, window, flat, fast, fast)[:2] == (False, False)
    slow_worker = {"rates": {"tick.processed": 5_000.0}, "deltas": {}}
    assert judge_step(10_000, load, slow_worker, flat, fast, fast)[:2] == (False, False)
    assert judge_step(10_000, load, window, [0, 0, 1e4, 2e4, 3e4, 4e4, 5e4, 6e4], fast, fast)[:2] == (False, False)
    assert judge_step(10_000, load, {**window, "deltas": {"ohlcv.conflated": 3}}, flat, fast, fast)[:2] == (
        False,
        False,
    )
    assert judge_step(10_000, load, window, flat, fast, {"count": 9, "p99_us": 500_000})[:2] == (False, False)
    late = {"count": 100, "p99_us": 5_000}
    assert judge_step(10_000, load, window, flat, late, fast)[:2] == (True, False)  # kept up, but too slow
    assert judge_step(10_000, load, window, flat, {"count": 0}, fast)[:2] == (True, False)
    assert growing([3_000, 3_500, 2_800, 3_200, 3_100, 2_900, 3_300, 3_000], 10_000) is False  # steady


def test_dedup_verdict_counts_leaks_and_losses() -> None:
    plan = DedupPlan(3, 1_800_000_000 * NS)
    exact = sorted(plan.expected())
    assert judge(plan, exact, 0)["all_duplicates_suppressed"] is True
    verdict = judge(plan, exact + [exact[0]] + sorted(plan.cross_source())[:1], 0)
    assert verdict["duplicates_published"] == 2 and verdict["cross_source_published"] == 1
    assert not verdict["all_duplicates_suppressed"] and verdict["no_distinct_suppressed"]
    lossy = judge(plan, exact[1:], 0)
    assert lossy["distinct_suppressed"] == 1 and not lossy["no_distinct_suppressed"]


def test_the_checkpoint_bench_takes_checkpoints_as_a_shard_does_and_reports_every_figure() -> None:
    """`python -m bench.checkpoint` at tiny scale: every share has its loop, longest stop and durable figure."""
    out = measure(symbols=300, repeats=1)
    for pct in (1, 10, 100):
        loop, longest = out[f"loop_ms_{pct}pct_touched"], out[f"longest_stop_ms_{pct}pct_touched"]
        assert isinstance(loop, float) and isinstance(longest, float) and 0 <= longest <= loop
        durable = out[f"durable_ms_{pct}pct_touched"]
        assert isinstance(durable, float) and durable >= loop
    assert out["store_mb"] and out["row_bytes"]
