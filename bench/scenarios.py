"""The design's scenarios, channel isolation, dedup accuracy and memory per symbol, each on a fresh mesh."""

from __future__ import annotations

import logging
import time
from typing import Any

import psutil
import zmq

from bench.dedup import DedupPlan, judge
from bench.drive import LoadProc, SinkProc, Window, accounted, hold, summarize, wait_processed
from bench.procs import Stage, memory_bytes, merge
from bench.stages import System, start
from bench.workload import Mix, scenario_mix
from feeds.sim import SCENARIOS
from tickmesh.producer import Producer
from tickmesh.schema import EventBatch, WorkerDone, encoder, published_decoder
from tickmesh.sockets import make_socket

log = logging.getLogger(__name__)
MB = 1 << 20
Settings = dict[str, Any] | None  # config overrides (`--set`) merged into every stage's TOML


def mesh_memory(stage: Stage, names: list[str]) -> dict[str, tuple[int, int]]:
    """(RSS, USS) by process name."""
    return memory_bytes({n: pid for n, pid in stage.pids().items() if n in names})


def design_scenario(name: str, duration: float, scale: float = 1.0, settings: Settings = None) -> dict[str, Any]:
    """One of the design's load presets for `duration` s: the success table's figures."""
    sc = SCENARIOS[name]
    tick, ohlcv, fmv = (max(1, round(n * scale)) for n in (sc.tick, sc.ohlcv, sc.fmv))
    mix = scenario_mix(tick, ohlcv, fmv, sc.per_minute)
    rate = sc.per_minute / 60
    system = start("mesh", settings, name=name)
    try:
        stage = system.stage
        sink = SinkProc(stage)
        sink.wait_ready()
        load = LoadProc(stage, "load", mix)
        sink.take()
        window = Window(stage, system.reporters)
        load.rate(rate)
        hold(stage, duration)
        sent = load.rate(0)["phase_sent"]
        wait_processed(stage, system.reporters, accounted(window.start) + sent, timeout=30)
        measured = window.close()
        taken = sink.take()
        memory = mesh_memory(stage, system.reporters)
        bars = measured["deltas"].get("ohlcv.processed", 0)
        per_min = bars / duration * 60
        return {
            "symbols": {"tick": tick, "ohlcv": ohlcv, "fmv": fmv},
            "offered_per_s": round(rate, 1),
            "duration_s": duration,
            "records_sent": sent,
            "records_processed": sum(v for k, v in measured["deltas"].items() if k.endswith(".processed")),
            "ohlcv_bars_processed_per_min": round(per_min),
            "ohlcv_symbols_processed_per_min": round(min(ohlcv, per_min)),
            "tick_latency": summarize(taken.latency.get("tick")),
            "made_to_delivered": summarize(taken.latency.get("tick.source")),
            "ohlcv_latency": summarize(taken.latency.get("ohlcv")),
            "fmv_latency": summarize(taken.latency.get("fmv")),
            "events": {k: v for k, v in taken.counts.items() if "." in k},
            "gaps": taken.counts.get("gaps", 0),
            "rss_mb": {n: round(rss / MB, 1) for n, (rss, _) in sorted(memory.items())},
            "rss_total_mb": round(sum(rss for rss, _ in memory.values()) / MB, 1),
            "uss_total_mb": round(sum(uss for _, uss in memory.values()) / MB, 1),
            "cpu_percent": measured["cpu_percent"],
            "shed": {k: v for k, v in measured["deltas"].items() if k.endswith((".conflated", ".dropped_oldest"))},
        }
    finally:
        system.close()


def isolation(
    duration: float,
    tick_rate: float,
    flood_rate: float,
    scale: float = 1.0,
    settings: Settings = None,
    settle: float = 2.0,
) -> dict[str, Any]:
    """Tick latency alone, then with an OHLCV flood from a second producer (same mesh, same tick load)."""
    ticks_only = {"ohlcv_symbols": 0, "fmv_symbols": 0, "trade_share": 1.0, "fmv_share": 0.0}
    tick_mix = Mix(tick_symbols=max(1, round(500 * scale)), high_every_s=1.2, **ticks_only)  # type: ignore[arg-type]
    bars_only = {"tick_symbols": 0, "fmv_symbols": 0, "trade_share": 0.0, "fmv_share": 0.0}
    flood_mix = Mix(ohlcv_symbols=max(1, round(8_000 * scale)), seed=1, **bars_only)  # type: ignore[arg-type]
    system = start("mesh", settings, name="isolation")
    try:
        stage = system.stage
        sink = SinkProc(stage)
        sink.wait_ready()
        ticks = LoadProc(stage, "load", tick_mix)
        flood = LoadProc(stage, "flood", flood_mix)
        ticks.rate(tick_rate)
        hold(stage, settle)
        sink.take()
        window = Window(stage, system.reporters)
        hold(stage, duration)
        quiet, quiet_window = sink.take(), window.close()
        flood.rate(flood_rate)
        hold(stage, settle)
        sink.take()
        window = Window(stage, system.reporters)
        hold(stage, duration)
        loud, loud_window = sink.take(), window.close()
        flood_stats = flood.rate(0)
        ticks.rate(0)
        return {
            "tick_rate": tick_rate,
            "flood_rate": flood_rate,
            "flood_sent_per_s": round(flood_stats["phase_sent"] / max(flood_stats["phase_s"], 1e-9)),
            "ohlcv_processed_per_s": round(loud_window["rates"].get("ohlcv.processed", 0.0)),
            "ohlcv_conflated": loud_window["deltas"].get("ohlcv.conflated", 0),
            "without_flood": summarize(quiet.latency.get("tick")),
            "with_flood": summarize(loud.latency.get("tick")),
            "cpu_percent_without": quiet_window["cpu_percent"],
            "cpu_percent_with": loud_window["cpu_percent"],
        }
    finally:
        system.close()


def dedup_accuracy(tickers: int, settings: Settings = None, quiet: float = 1.0) -> dict[str, Any]:
    """Distinct, duplicate-record and cross-source events through the real mesh, then redelivered events."""
    system = start("mesh", settings, name="dedup")
    stage = system.stage
    try:
        sink = SinkProc(stage, keep=True)
        sink.wait_ready()
        plan = DedupPlan(tickers, time.time_ns())
        producer = Producer(stage.ctx, stage.endpoints, name="dedup")  # closed with the stage's context
        keys: list[tuple[str, str, str, int]] = []
        payloads: list[bytes] = []
        sent = 0
        for i, records in enumerate(plan.phases()):
            for k in range(0, len(records), 100):
                producer.send_raw(encoder.encode(records[k : k + 100]))
            producer.flush()
            sent += len(records)
            wait_processed(stage, system.reporters, sent, timeout=20)
            deadline = time.monotonic() + (20 if i < 3 else 0)
            while len(keys) < plan.expected_after_phase(i) and time.monotonic() < deadline:
                hold(stage, 0.2)
                taken = sink.take()
                keys, payloads = keys + taken.keys, payloads + taken.payloads
            hold(stage, quiet)  # anything the phase should not have produced has had time to show up
            taken = sink.take()
            keys, payloads = keys + taken.keys, payloads + taken.payloads
        redelivered = _redeliver(stage, payloads)
        hold(stage, quiet)
        keys += sink.take().keys
        result = judge(plan, keys, redelivered)
        counters = stage.fresh(["aggregator"])["aggregator"].counters
        result["aggregator_counters"] = {k: v for k, v in counters.items() if k.startswith(("deduplicated", "stale"))}
        return result
    finally:
        system.close()


def _redeliver(stage: Stage, payloads: list[bytes]) -> int:
    """Push every event already published again, as a worker replaying after a crash would: all are duplicates."""
    events = []
    for payload in payloads:
        publication = published_decoder.decode(payload)
        events.append(publication.event)  # type: ignore[union-attr]
    if not events:
        return 0
    fields: dict[str, Any] = {
        "worker": "bench-redelivery", "channel": "tick", "shard": 0, "epoch": -1, "upto": -1, "events": events
    }  # fmt: skip
    try:
        batch = EventBatch(**{k: v for k, v in fields.items() if k in EventBatch.__struct_fields__})
        done = WorkerDone(**{k: v for k, v in fields.items() if k in WorkerDone.__struct_fields__})
    except TypeError as exc:  # the schema moved on: say so rather than guess
        log.warning("cannot build a redelivery batch: %s", exc)
        return 0
    push = make_socket(stage.ctx, zmq.PUSH, connect=stage.endpoints.events, hwm=100, linger_ms=1_000)
    try:
        push.send(encoder.encode(batch))
        push.send(encoder.encode(done))
    finally:
        push.close()
    return len(events)


NO_SHEDDING = {"channels": {"ohlcv": {"overflow": "block"}, "fmv": {"overflow": "block"}}}


def memory(sizes: tuple[int, int], points: int, settings: Settings = None) -> dict[str, Any]:
    """Worker RSS with warm state (every window full) for two symbol counts per channel.

    Warm-up history must arrive whole, so this mesh blocks instead of conflating
    OHLCV and FMV. RSS is sampled over a checkpoint interval: `min` is the state,
    `max` adds the transient peak of writing a checkpoint of it.
    """
    small, large = sizes
    mix = Mix(tick_symbols=large, ohlcv_symbols=large, fmv_symbols=0, trade_share=0.5, fmv_share=0.0)
    system = start("mesh", merge(NO_SHEDDING, settings or {}), name="memory")
    stage = system.stage
    workers = [f"worker.{ch}.0" for ch in ("tick", "ohlcv", "fmv")]
    try:
        load = LoadProc(stage, "load", mix, batch=1_000, hwm=20)
        rss = {"idle": _rss_range(stage, workers, 1.0)}
        sent = 0
        for label, (a, b) in ((str(small), (0, small)), (str(large), (small, large))):
            load.warm((a, b), (a, b), points)
            sent = _wait_warm(stage, load, system, timeout=900)
            rss[label] = _rss_range(stage, workers, stage.config.state.checkpoint_s + 0.5)
        out: dict[str, Any] = {"symbols": list(sizes), "records_sent": sent, "tick_points_per_symbol": points}
        for name in workers:
            low = {k: rss[k].get(name, (0, 0))[0] for k in rss}
            high = {k: rss[k].get(name, (0, 0))[1] for k in rss}
            out[name.split(".")[1]] = {
                "rss_mb": {k: round(v / MB, 1) for k, v in low.items()},
                "rss_peak_mb": {k: round(v / MB, 1) for k, v in high.items()},
                f"bytes_per_symbol_first_{small}": round((low[str(small)] - low["idle"]) / small),
                f"bytes_per_symbol_{small}_to_{large}": round((low[str(large)] - low[str(small)]) / (large - small)),
            }
        return out
    finally:
        system.close()


def _rss_range(stage: Stage, names: list[str], seconds: float) -> dict[str, tuple[int, int]]:
    """(lowest, highest) RSS of each process, sampled every 50 ms for `seconds`."""
    procs = {n: psutil.Process(pid) for n, pid in stage.pids().items() if n in names}
    seen: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            rss = proc.memory_info().rss
            low, high = seen.get(name, (rss, rss))
            seen[name] = (min(low, rss), max(high, rss))
        time.sleep(0.05)
    return seen


def _wait_warm(stage: Stage, load: LoadProc, system: System, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while load.stats()["warming"]:
        hold(stage, 0.5)
        if time.monotonic() > deadline:
            break
    sent = int(load.stats()["sent"])
    while True:  # a status late under load ends one wait early: measuring a backlog is no measurement
        done = wait_processed(stage, system.reporters, sent, timeout=max(10.0, deadline - time.monotonic()))
        if done >= sent or time.monotonic() > deadline:
            return sent
