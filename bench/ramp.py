"""Throughput: the sustained-rate ramp (held 20 s, no growing backlog, tick p99 < 5 ms) and flat-out rates."""

from __future__ import annotations

import logging
import time
from typing import Any

from bench.compare import cpu_per_record
from bench.drive import LoadProc, SinkProc, Window, hold, summarize
from bench.sink import HOPS
from bench.stages import System
from bench.workload import Mix

log = logging.getLogger(__name__)
STEPS = (10_000, 25_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000, 500_000, 700_000, 1_000_000)
TICK_P99_US = 5_000  # the target at load
SOURCE_P99_US = 100_000  # records waiting in ingest pipes show up here (the router's stamp cannot see them)
LOSS_KEYS = ("conflated", "dropped_oldest", "paused_dropped", "breaker_skipped", "failed")


def growing(samples: list[float], rate: float) -> bool:
    """A backlog grows when its last quarter is above its first by more than 100 ms of traffic (and is not tiny)."""
    if len(samples) < 4:
        return False
    q = max(1, len(samples) // 4)
    first, last = sum(samples[:q]) / q, sum(samples[-q:]) / q
    return last - first > 0.1 * rate and last > 0.05 * rate


def judge_step(
    rate: float, load: dict[str, Any], window: dict[str, Any], backlog: list[float], tick: dict[str, Any],
    source: dict[str, Any],
) -> tuple[bool, bool, list[str]]:  # fmt: skip
    """(kept up, held, why not) for one step (pure).

    Kept up: the producer kept its schedule, 95 % of the offered rate was processed,
    the backlog did not grow, nothing was shed. Held: kept up, and tick p99 < 5 ms.
    """
    reasons = []
    if load["behind_s"] > 0.5:
        reasons.append(f"producer {load['behind_s']:.1f} s behind its schedule (router pushed back)")
    processed = sum(v for k, v in window["rates"].items() if k.endswith(".processed"))
    if processed < 0.95 * rate:
        reasons.append(f"processed {processed:,.0f}/s < 95 % of offered")
    if growing(backlog, rate):
        reasons.append(f"backlog grew to {backlog[-1]:,.0f} records")
    lost = {k: v for k, v in window["deltas"].items() if k.split(".")[-1] in LOSS_KEYS}
    if lost:
        reasons.append(f"records shed or failed: {lost}")
    if source.get("count", 0) and source["p99_us"] >= SOURCE_P99_US:
        reasons.append(f"made→delivered p99 {source['p99_us'] / 1000:.0f} ms: records wait before ingest")
    kept_up = not reasons
    if tick.get("count", 0) == 0:
        reasons.append("no tick events delivered")
    elif tick["p99_us"] >= TICK_P99_US:
        reasons.append(f"tick p99 {tick['p99_us'] / 1000:.2f} ms ≥ 5 ms")
    return kept_up, not reasons, reasons


def step(system: System, load: LoadProc, sink: SinkProc, rate: float, hold_s: float, settle_s: float) -> dict[str, Any]:
    """Offer `rate` records/s, let it settle, then measure for `hold_s`."""
    stage = system.stage
    load.rate(rate)
    hold(stage, settle_s)
    sink.take()
    window = Window(stage, system.reporters)
    backlog: list[float] = []
    hold(stage, hold_s, lambda: backlog.append(stage.gauge_sum((".queue_depth",), system.backlog)))
    taken = sink.take()
    measured = window.close()
    stats = load.stats()
    tick, source = summarize(taken.latency.get("tick")), summarize(taken.latency.get("tick.source"))
    kept_up, held, reasons = judge_step(rate, stats, measured, backlog, tick, source)
    processed = sum(v for k, v in measured["rates"].items() if k.endswith(".processed"))
    log.info("%s at %s/s: %s %s", system.kind, f"{rate:,.0f}", "held" if held else "NOT held", "; ".join(reasons))
    return {
        "offered": rate,
        "held": held,
        "kept_up": kept_up,
        "why_not": reasons,
        "sent_per_s": round(stats["phase_sent"] / max(stats["phase_s"], 1e-9)),
        "processed_per_s": round(processed),
        "producer_behind_s": round(stats["behind_s"], 3),
        "backlog_end": backlog[-1] if backlog else 0,
        "tick_latency": tick,
        "made_to_delivered": source,
        "tick_hops": {name.rsplit(".", 1)[1]: summarize(taken.latency.get(name)) for name in HOPS},
        "events": taken.counts.get("events", 0),
        "gaps": taken.counts.get("gaps", 0),
        "cpu_percent": measured["cpu_percent"],
    }


def drain(system: System, load: LoadProc, timeout: float = 15.0) -> None:
    """Stop offering load and wait until nothing waits (best effort: a stuck backlog is a finding, not an error)."""
    load.rate(0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hold(system.stage, 0.25)
        if system.stage.gauge_sum((".queue_depth",), system.backlog) == 0:
            break
    hold(system.stage, 0.5)


def sustained(
    system: System, mix: Mix, hold_s: float, settle_s: float, steps: tuple[int, ...] = STEPS
) -> dict[str, Any]:
    """Ramp through `steps` while the system keeps up, then try the midpoint of the last two.

    Two figures: the highest rate held (kept up, and tick p99 < 5 ms: the issue's
    definition) and the highest rate kept up (throughput alone, latency aside).
    """
    sink = SinkProc(system.stage)
    sink.wait_ready()
    load = LoadProc(system.stage, "load", mix)
    results: list[dict[str, Any]] = []
    for rate in steps:
        results.append(step(system, load, sink, rate, hold_s, settle_s))
        if not results[-1]["kept_up"]:
            break
    kept = [r for r in results if r["kept_up"]]
    failed = results[-1] if not results[-1]["kept_up"] else None
    if failed is not None and kept and failed["offered"] > kept[-1]["offered"] * 1.2:
        drain(system, load)
        results.append(step(system, load, sink, (kept[-1]["offered"] + failed["offered"]) / 2, hold_s, settle_s))
    load.rate(0)
    held = [r for r in results if r["held"]]
    kept = [r for r in results if r["kept_up"]]
    best = max(held, key=lambda r: r["offered"], default=None)
    capacity = max(kept, key=lambda r: r["offered"], default=None)
    return {
        "max_sustained_per_s": best["offered"] if best else 0,
        "max_kept_up_per_s": capacity["offered"] if capacity else 0,
        "at_max": best,
        "at_capacity": capacity,
        "steps": results,
        "hold_s": hold_s,
    }


def flat_out(system: System, mix: Mix, seconds: float, warm_s: float, blast: bool) -> dict[str, Any]:
    """Records/s through the system with the producer sending as fast as it is let (per-process CPU too)."""
    stage = system.stage
    load = LoadProc(stage, "load", mix, blast=blast)
    load.rate(-1)
    hold(stage, warm_s)
    window = Window(stage, system.reporters)
    hold(stage, seconds)
    measured = window.close()
    load.rate(0)
    rates = measured["rates"]
    processed = sum(v for k, v in rates.items() if k.endswith(".processed"))
    out: dict[str, Any] = {
        "processed_per_s": round(processed),
        "cpu_percent": measured["cpu_percent"],
        "seconds": seconds,
        "shed": {k: v for k, v in measured["deltas"].items() if k.split(".")[-1] in LOSS_KEYS},
    }
    if "delivered" in rates:
        out["delivered_per_s"] = round(rates["delivered"])
    out.update(cpu_per_record(measured["cpu_percent"], out.get("delivered_per_s") or processed))
    return out
