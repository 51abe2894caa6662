"""`tickmesh-bench`: run the benchmark parts on real processes and write report.json, report.md and latency.png."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec
import zmq

from bench import hop, journal, ramp, report, scenarios, stages
from bench.workload import Mix, scenario_mix
from feeds.sim import SCENARIOS
from tickmesh.cli import EXIT_USAGE, command_parser, log_level_option
from tickmesh.config import Config

log = logging.getLogger("bench")
PARTS = (
    "market_open_surge", "steady_state", "isolation", "dedup", "ceiling", "sustained", "peer", "memory", "journal",
    "hop",
)  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser(
        "tickmesh-bench",
        "Benchmark the mesh: the design's scenarios, sustained throughput, channel isolation, dedup "
        "accuracy, the raw transport ceiling, the single-process peer, memory per symbol and the cost of one hop.",
        [log_level_option()],
    )
    p.add_argument("--out", default="bench-results", help="output directory (default bench-results/)")
    p.add_argument("--duration", type=float, help="seconds per design scenario (default 60; --quick 5)")
    p.add_argument(
        "--quick", action="store_true", help="a short run: 5 s scenarios, 3 s ramp steps, fewer symbols and windows"
    )
    p.add_argument("--only", help=f"comma list of parts to run (default all: {','.join(PARTS)})")
    p.add_argument("--hold", type=float, help="seconds each ramp step is held (default 20; --quick 3)")
    p.add_argument("--settle", type=float, help="seconds before each ramp step is measured (default 3; --quick 1)")
    p.add_argument("--steps", help="comma list of ramp rates, records/s (default 10k … 1M)")
    p.add_argument("--flat-out", type=float, help="seconds of each flat-out (ceiling) measurement (default 10)")
    p.add_argument("--tick-rate", type=float, default=5_000, help="isolation: trades/s (default 5000)")
    p.add_argument(
        "--flood-rate", type=float, default=50_000, help="isolation: OHLCV bars/s of the flood (default 50000)"
    )
    p.add_argument("--memory-symbols", help="two symbol counts for memory (default 8000,100000; --quick 2000,10000)")
    p.add_argument(
        "--memory-points", type=int, help="warm-up trades per tick symbol (default 140: every window full; --quick 30)"
    )
    p.add_argument("--dedup-tickers", type=int, help="tickers in the dedup run (default 200; --quick 20)")
    p.add_argument("--journal-events", type=int, help="journal: events published (default 300000; --quick 50000)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every symbol count (tiny runs: 0.01)")
    p.add_argument("--routers", type=int, default=1, help="routers in the mesh and the raw ceiling (default 1)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every stage, e.g. router.window=200000 (repeatable)",
    )
    return p.parse_args(argv)


class Plan(msgspec.Struct, kw_only=True):
    """The settings of one run, after defaults and --quick."""

    duration: float
    hold: float
    settle: float
    steps: tuple[int, ...]
    flat_out: float
    memory: tuple[int, int]
    memory_points: int
    dedup_tickers: int
    journal_events: int
    journal_windows: int
    hop_messages: int
    scale: float
    tick_rate: float
    flood_rate: float
    settings: dict[str, Any]


def plan_from(args: argparse.Namespace) -> Plan:
    quick = args.quick
    memory = (2_000, 10_000) if quick else (8_000, 100_000)
    if args.memory_symbols:
        a, b = (int(x) for x in args.memory_symbols.split(","))
        memory = (a, b)
    steps = tuple(int(float(x)) for x in args.steps.split(",")) if args.steps else ramp.STEPS
    return Plan(
        duration=args.duration or (5.0 if quick else 60.0),
        hold=args.hold or (3.0 if quick else 20.0),
        settle=args.settle if args.settle is not None else (1.0 if quick else 3.0),
        steps=steps,
        flat_out=args.flat_out or (3.0 if quick else 10.0),
        memory=memory,
        memory_points=args.memory_points or (30 if quick else 140),
        dedup_tickers=args.dedup_tickers or (20 if quick else 200),
        journal_events=args.journal_events or (50_000 if quick else 300_000),
        journal_windows=4 if quick else 16,
        hop_messages=1_000 if quick else 10_000,
        scale=args.scale,
        tick_rate=args.tick_rate,
        flood_rate=args.flood_rate,
        settings=checked(with_routers(overrides(args.set), args.routers)),
    )


def with_routers(settings: dict[str, Any], routers: int) -> dict[str, Any]:
    """`--routers N` is `--set router.count=N` (an explicit --set wins)."""
    if routers != 1:
        settings.setdefault("router", {}).setdefault("count", routers)
    return settings


def checked(settings: dict[str, Any]) -> dict[str, Any]:
    """The overrides, if they make a valid config (else ValueError naming the bad key)."""
    try:
        msgspec.convert(settings, Config)
    except msgspec.ValidationError as exc:
        raise ValueError(f"--set: {exc}") from None
    return settings


def overrides(items: list[str]) -> dict[str, Any]:
    """`a.b=1` items as nested dicts; values are read as TOML (numbers, booleans; anything else a string)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        *path, leaf = key.split(".")
        table = out
        for part in path:
            table = table.setdefault(part, {})
        table[leaf] = value
    return out


def ramp_mix(scale: float) -> Mix:
    """market_open_surge's channel shares, with 500 tick symbols making highs every 1.5 s (enough latency samples)."""
    sc = SCENARIOS["market_open_surge"]
    base = scenario_mix(sc.tick, sc.ohlcv, sc.fmv, sc.per_minute)
    return msgspec.structs.replace(
        base,
        tick_symbols=max(1, round(500 * scale)),
        ohlcv_symbols=max(1, round(8_000 * scale)),
        fmv_symbols=max(1, round(50 * scale)),
        high_every_s=1.5,
    )


def run_part(name: str, plan: Plan, results: dict[str, Any]) -> None:
    """Run one part and file its figures under its place in the results."""
    if name in ("market_open_surge", "steady_state"):
        sc = scenarios.design_scenario(name, plan.duration, plan.scale, plan.settings)
        results.setdefault("scenarios", {})[name] = sc
    elif name == "isolation":
        duration = max(1.0, plan.duration / 2)
        results["isolation"] = scenarios.isolation(
            duration, plan.tick_rate, plan.flood_rate, plan.scale, plan.settings, plan.settle
        )
    elif name == "dedup":
        results["dedup"] = scenarios.dedup_accuracy(plan.dedup_tickers, plan.settings, max(0.5, plan.settle))
    elif name == "ceiling":
        results["ceiling"] = ceiling(plan)
    elif name in ("sustained", "peer"):
        kind = "mesh" if name == "sustained" else "peer"
        results.setdefault("sustained", {})[kind] = _with_system(
            kind, plan, lambda system: ramp.sustained(system, ramp_mix(plan.scale), plan.hold, plan.settle, plan.steps)
        )
    elif name == "memory":
        results["memory"] = scenarios.memory(plan.memory, plan.memory_points, plan.settings)
    elif name == "journal":
        results["journal"] = journal.journal_part(plan.journal_events)
        rate = min(100_000, max(plan.steps))  # the figure: the mesh at 100k records/s
        results["journal"]["mesh"] = journal.mesh_cost(
            ramp_mix(plan.scale), rate, plan.hold, plan.settle, plan.settings, plan.journal_windows
        )
    elif name == "hop":
        results["hop"] = hop.hop_part(plan.hop_messages)


def _with_system(kind: str, plan: Plan, measure: Callable[[stages.System], dict[str, Any]]) -> dict[str, Any]:
    system = stages.start(kind, plan.settings)
    try:
        return measure(system)
    finally:
        system.close()


def ceiling(plan: Plan) -> dict[str, Any]:
    """The pass-through mesh and the raw ZeroMQ + msgspec hops, flat out on the same pre-encoded frames."""
    mix = ramp_mix(plan.scale)
    warm = min(3.0, plan.flat_out)
    out: dict[str, Any] = {}
    out["pass_through_mesh"] = _with_system(
        "passthrough", plan, lambda s: ramp.flat_out(s, mix, plan.flat_out, warm, True)
    )
    out["raw_ceiling"] = _with_system("ceiling", plan, lambda s: ramp.flat_out(s, mix, plan.flat_out, warm, True))
    out["raw_all_hops"] = _with_system(
        "ceiling_all_hops", plan, lambda s: ramp.flat_out(s, mix, plan.flat_out, warm, True)
    )
    raw = out["raw_ceiling"].get("delivered_per_s") or out["raw_ceiling"]["processed_per_s"]
    if raw:
        out["fraction"] = round(out["pass_through_mesh"]["processed_per_s"] / raw, 3)
    return out


def machine(argv: list[str] | None) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgspec": msgspec.__version__,
        "command": " ".join(["tickmesh-bench", *(sys.argv[1:] if argv is None else argv)]),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],  # other work on the machine skews every figure
        "python_speed_start": python_speed(),
        "idle_states": idle_states(),
        "code": code_version(),
    }


def idle_states() -> str:
    """How this host's idle CPUs sleep: the cpuidle driver and CPU 0's states with their wake-up latency.

    A message to a process waiting in poll costs it more than twice the CPU when its CPU must
    wake from sleep (`--only hop`), so two reports compare only on hosts whose CPUs sleep alike
    (`[process] cpu_latency_us`, tuned, or the kernel's command line change it).
    """
    base = Path("/sys/devices/system/cpu")
    try:
        driver = (base / "cpuidle" / "current_driver").read_text().strip()
        states = sorted((base / "cpu0" / "cpuidle").glob("state*"), key=lambda p: int(p.name[5:]))
        names = [f"{(s / 'name').read_text().strip()} {(s / 'latency').read_text().strip()} µs" for s in states]
    except OSError:
        return "unknown (no cpuidle in /sys)"
    return f"{driver}: {', '.join(names)}"


def python_speed() -> float:
    """Million iterations/s of a fixed pure-Python loop, best of 3: the host's speed right now.

    Shared cloud cores vary from day to day and hour to hour (the same plain loop took 0.72 to
    1.13 s on one idle machine within minutes), so a report carries the figure: two reports
    compare the code only when their hosts ran at about the same speed.
    """
    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(2.0 / best, 1)


def code_version() -> str:
    """The commit measured, and whether the tree had uncommitted changes (they are measured too)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True)  # fmt: skip
    except OSError:
        return "unknown (no git)"
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    return head.stdout.strip() + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        plan = plan_from(args)
    except ValueError as exc:
        print(f"tickmesh-bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parts = [p.strip() for p in args.only.split(",")] if args.only else list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"tickmesh-bench: unknown part(s) {unknown}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return EXIT_USAGE
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM unwinds like Ctrl-C: every stage stops its processes
    results: dict[str, Any] = {"meta": machine(argv), "plan": msgspec.to_builtins(plan), "errors": {}}
    code = 0
    began = time.monotonic()
    try:
        for part in parts:
            log.info("— %s", part)
            started = time.monotonic()
            try:
                run_part(part, plan, results)
            except KeyboardInterrupt:
                results["errors"][part] = "interrupted"
                code = 130  # the shell's code for Ctrl-C
                break
            except Exception as exc:  # one part failing must not lose the others' figures
                log.exception("%s failed", part)
                results["errors"][part] = f"{type(exc).__name__}: {exc}"[:2_000]
                code = 1
            log.info("— %s done in %.0f s", part, time.monotonic() - started)
    finally:
        signal.signal(signal.SIGTERM, previous)
        results["meta"]["elapsed_s"] = round(time.monotonic() - began, 1)
        results["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results["meta"]["python_speed_end"] = python_speed()
        paths = report.write(results, Path(args.out))
        for path in paths.values():
            print(f"wrote {path}")
    return code
