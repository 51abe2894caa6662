"""The benchmark report: targets judged from the results, then report.json, report.md and latency.png."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from bench import compare

log = logging.getLogger(__name__)


def _get(data: Any, *path: str) -> Any:
    """`data[a][b]…`, or None where a key is missing."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _step_at(results: dict[str, Any], system: str, rate: int) -> dict[str, Any] | None:
    for step in _get(results, "sustained", system, "steps") or []:
        if step["offered"] == rate:
            return step  # type: ignore[no-any-return]
    return None


def _ms(us: float | None) -> str:
    return "—" if us is None else f"{us / 1000:.3g} ms"


def _target(name: str, goal: str, measured: str, met: bool | None, note: str = "") -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": measured, "met": met, "note": note}


def _below(value: float | None, limit: float) -> bool | None:
    return None if value is None else value < limit


def _worst_bytes_per_symbol(results: dict[str, Any]) -> float | None:
    values = [
        v
        for ch in ("tick", "ohlcv", "fmv")
        for k, v in (_get(results, "memory", ch) or {}).items()
        if k.startswith("bytes_per_symbol_") and "_to_" in k and v is not None
    ]
    return max(values) if values else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue, judged from what was measured (None: not measured in this run)."""
    out = []
    for rate, limit in ((10_000, 1_000), (100_000, 5_000)):
        step = _step_at(results, "mesh", rate)
        p99 = _get(step, "tick_latency", "p99_us")
        if step is None:
            note = "step not reached"
        else:
            note = "" if step["kept_up"] else "rate not kept up: " + "; ".join(step["why_not"])
        met = None if p99 is None else bool(p99 < limit and step and step["kept_up"])
        out.append(
            _target(f"tick p99 at {rate:,} records/s, all channels", f"< {limit / 1000:g} ms", _ms(p99), met, note)
        )
    mesh = _get(results, "sustained", "mesh") or {}
    peer = _get(results, "sustained", "peer") or {}
    mesh_max, peer_max = mesh.get("max_sustained_per_s"), peer.get("max_sustained_per_s")
    note = f"kept up (latency aside) to {_rate(mesh.get('max_kept_up_per_s'))}" if mesh else ""
    shown = "—" if mesh_max is None else f"{mesh_max:,.0f}/s"
    met = None if mesh_max is None else mesh_max >= 500_000
    out.append(
        _target("sustained throughput, full detection, tick p99 < 5 ms", "≥ 500,000 records/s", shown, met, note)
    )
    ratio = mesh_max / peer_max if mesh_max is not None and peer_max else None
    kept = (mesh.get("max_kept_up_per_s") or 0) / peer["max_kept_up_per_s"] if peer.get("max_kept_up_per_s") else None
    shown = "—" if ratio is None else f"{ratio:.2f} × ({peer_max:,.0f}/s peer)"
    note = "" if kept is None else f"kept-up rates: {kept:.2f} × ({_rate(peer.get('max_kept_up_per_s'))} peer)"
    met = None if ratio is None else ratio >= 1.5
    out.append(_target("mesh ÷ single-process peer (sustained)", "≥ 1.5 ×", shown, met, note))
    cpu = _get(results, "side_by_side", "headline", "cpu_us_per_record") or {}
    shown = "—" if cpu.get("ratio") is None else f"{cpu['ratio']:.2f} × ({cpu['mesh']:.2f} vs {cpu['peer']:.2f} µs)"
    note = "" if cpu.get("at") is None else f"at {_rate(cpu['at'])}, the highest rate both kept up"
    out.append(
        _target("mesh CPU per record ÷ the peer's", f"≤ {compare.CPU_RATIO_GOAL} ×", shown, cpu.get("met"), note)
    )
    fraction = _get(results, "ceiling", "fraction")
    out.append(_target("pass-through mesh ÷ raw transport ceiling", "≥ 70 %",
                       "—" if fraction is None else f"{100 * fraction:.1f} %",
                       None if fraction is None else fraction >= 0.7))  # fmt: skip
    total = _get(results, "scenarios", "steady_state", "rss_total_mb")
    shown = "—" if total is None else f"{total:.0f} MB"
    out.append(_target("whole mesh RSS, 8,000 OHLCV + 500 tick symbols", "< 300 MB", shown, _below(total, 300)))
    worst = _worst_bytes_per_symbol(results)
    shown = "—" if worst is None else f"{worst / 1024:.2f} KB"
    out.append(_target("worker state per symbol (marginal, worst channel)", "< 1.5 KB", shown, _below(worst, 1536)))
    for name in ("market_open_surge", "steady_state"):
        p99 = _get(results, "scenarios", name, "tick_latency", "p99_us")
        out.append(
            _target(f"{name}: tick p99 (design asked)", "< 50 ms", _ms(p99), None if p99 is None else p99 < 50_000)
        )
    dedup = _get(results, "dedup")
    if isinstance(dedup, dict) and "accuracy" in dedup:
        ok = bool(dedup["all_duplicates_suppressed"] and dedup["no_distinct_suppressed"])
        out.append(_target("dedup: every duplicate dropped, no distinct event dropped", "100 %",
                           f"{100 * dedup['accuracy']:.1f} % distinct kept, {dedup['duplicates_published']} dups out",
                           ok))  # fmt: skip
    else:
        out.append(_target("dedup: every duplicate dropped, no distinct event dropped", "100 %", "—", None))
    return out


# -- files ---------------------------------------------------------------------------------
def write(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    both = compare.side_by_side(results)
    if both is not None:
        results["side_by_side"] = both
    results["targets"] = targets(results)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "latency.png"}
    chart = write_chart(results, paths["png"])
    results["chart"] = str(paths["png"]) if chart else "not drawn: matplotlib is not installed (pip install matplotlib)"
    paths["json"].write_text(json.dumps(results, indent=2, default=str) + "\n")
    paths["md"].write_text(markdown(results))
    if not chart:
        del paths["png"]
    return paths


def latency_series(results: dict[str, Any]) -> dict[str, list[list[float]]]:
    """Percentile curves worth drawing: label → [[percentile, µs], ...]."""
    series: dict[str, list[list[float]]] = {}
    for name in ("market_open_surge", "steady_state"):
        curve = _get(results, "scenarios", name, "tick_latency", "curve")
        if curve:
            series[f"{name} (mesh)"] = curve
    for label, key in (("isolation: ticks alone", "without_flood"), ("isolation: + OHLCV flood", "with_flood")):
        curve = _get(results, "isolation", key, "curve")
        if curve:
            series[label] = curve
    for system in ("mesh", "peer"):
        top = _get(results, "sustained", system, "at_max") or _get(results, "sustained", system, "at_capacity")
        for step in (_step_at(results, system, 10_000), top):
            curve = _get(step, "tick_latency", "curve")
            if curve:
                series[f"{system} at {step['offered']:,.0f}/s"] = curve  # type: ignore[index]
    return series


def write_chart(results: dict[str, Any], path: Path) -> bool:
    """Tick latency percentile curves (HDR style); False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no latency chart")
        return False
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, curve in latency_series(results).items():
        points = [(1 / (1 - p / 100), us / 1000) for p, us in curve if p < 100]
        if points:
            ax.plot([x for x, _ in points], [max(y, 0.001) for _, y in points], marker="o", ms=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1_000, 10_000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0 %", "50 %", "90 %", "99 %", "99.9 %", "99.99 %"])
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.axhline(5.0, color="grey", ls="--", lw=1)
    ax.set_xlabel("percentile")
    ax.set_ylabel("tick event latency, ingest → subscriber (ms)")
    meta = results.get("meta", {})
    ax.set_title(
        f"tickmesh tick latency — {meta.get('cpu_model', '')}, {meta.get('cores', '?')} cores, {meta.get('date', '')}"
    )
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a run without ramp or scenario parts has no curve to name
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- markdown ----------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("—" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _lat(summary: dict[str, Any] | None) -> list[str]:
    if not summary or not summary.get("count"):
        return ["—", "—", "—", "0"]
    return [_ms(summary["p50_us"]), _ms(summary["p99_us"]), _ms(summary["p99.9_us"]), f"{summary['count']:,}"]


def _hops_table(steps: list[dict[str, Any]]) -> str:
    """Tick latency split at the event's stamps, per step: where the time goes."""
    hops = ("detect", "publish", "deliver")
    rows = [
        [_rate(s["offered"]), *(f"{_ms(h['p50_us'])} / {_ms(h['p99_us'])}" for h in (s["tick_hops"][n] for n in hops))]
        for s in steps
        if all(s.get("tick_hops", {}).get(n, {}).get("count") for n in hops)
    ]
    if not rows:
        return ""
    return "\nTick latency by hop, p50 / p99: ingest → detected (router batch and send, worker queue, detection), " \
        "detected → published (worker send, aggregator queue, dedup), published → received (PUB → SUB).\n\n" + \
        _table(["offered", "ingest → detected", "detected → published", "published → received"], rows)  # fmt: skip


def _rate(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.0f}/s"


def _memory_section(data: dict[str, Any] | None) -> list[str]:
    if not data or "symbols" not in data:
        return []
    small, large = data["symbols"]
    rows = []
    for ch in ("tick", "ohlcv", "fmv"):
        m = data.get(ch)
        if not m:
            continue
        rss, peak = m["rss_mb"], m["rss_peak_mb"]
        rows.append([f"worker.{ch}.0", f"{rss['idle']:.0f}", f"{rss[str(small)]:.0f} ({peak[str(small)]:.0f})",
                     f"{rss[str(large)]:.0f} ({peak[str(large)]:.0f})", f"{m[f'bytes_per_symbol_first_{small}']:,}",
                     f"{m[f'bytes_per_symbol_{small}_to_{large}']:,}"])  # fmt: skip
    return [
        f"\n## Memory per symbol (warm state: {data['tick_points_per_symbol']} trades per tick symbol, 12 bars per"
        " OHLCV symbol)\n",
        _table(
            [
                "worker",
                "idle MB",
                f"{small:,} symbols MB (peak)",
                f"{large:,} symbols MB (peak)",
                f"bytes/symbol, first {small:,}",
                f"bytes/symbol, {small:,} → {large:,}",
            ],
            rows,
        ),  # fmt: skip
        f"\nRecords sent to warm up: {data['records_sent']:,}. Peak = highest RSS over a checkpoint interval.\n",
    ]


def _journal_section(data: dict[str, Any] | None) -> list[str]:
    if not data:
        return []
    rows = []
    for backend in ("sqlite", "postgres"):
        b = data.get(backend, {})
        if "skipped" in b:
            rows.append([backend, "skipped", b["skipped"], "", ""])
        elif b:
            rows.append([backend, _rate(b["store_rows_per_s"]), _rate(b["events_per_s"]), _rate(b["published_per_s"]),
                         f"{b['stored']:,}"])  # fmt: skip
    return [
        "\n## Journal (events/s sustained per backend)\n",
        _table(["backend", "store writes", "journal process", "offered", "stored"], rows),
        f"\n{data['events']:,} distinct events published flat out by a stand-in aggregator (XPUB + replay ring) to a"
        f" real `python -m journal`; events/s from the first send to the last committed. Store writes: "
        f"`SqlStore.write` in-process, {data['batch']} rows per transaction.\n",
        *_journal_cost(data.get("mesh")),
    ]


def _journal_cost(mesh: dict[str, Any] | None) -> list[str]:
    if not mesh:
        return []
    rows = []
    for key, name in (("without_journal", "journal stopped"), ("with_journal", "journal running")):
        p99s = [v for v in mesh.get(f"{key}_p99_us", []) if v]
        if p99s:
            rows.append([name, str(len(p99s)), _ms(sum(p99s) / len(p99s)), _ms(min(p99s)), _ms(max(p99s))])
    cost = ""
    if "p99_cost_pct" in mesh:
        cost = f" Cost of the journal (mean p99 running ÷ stopped): **{mesh['p99_cost_pct']:+.1f} %**."
    journal = mesh.get("journal", {})
    return [
        f"\nThe mesh at {_rate(mesh['rate'])}, one run, in {mesh.get('window_s')} s windows alternating between the"
        " journal running beside it and stopped (SIGSTOP), in the order running, stopped, stopped, running, …:\n",
        _table(["journal", "windows", "mean tick p99", "lowest", "highest"], rows),
        f"\nJournal at the end: {journal.get('stored', 0):,} stored, {journal.get('lost', 0):,} lost, lag"
        f" {journal.get('lag')}; it used {journal.get('cpu_percent_running')} % of a core while running.{cost}\n",
    ]


def _hop_section(data: dict[str, Any] | None) -> list[str]:
    if not data:
        return []
    rows = []
    for key, name in (
        ("anywhere", "where the scheduler puts them"),
        ("one_cpu", f"both on CPU {data['one_cpu']['cpu']}"),
        ("idle_cpus_poll", "anywhere, idle CPUs polling (`cpu_latency_us = 0`)"),
    ):
        if key not in data:  # the last one needs root: /dev/cpu_dma_latency
            continue
        m = data[key]
        rows.append([name, f"{m['cpu_us_per_message']} µs", str(m["sleeps_per_message"]),
                     f"{m['round_trip_p50_us']} µs", f"{m['round_trip_p99_us']} µs"])  # fmt: skip
    return [
        "\n## One hop on this host\n",
        f"{data['messages']:,} messages of {data['payload_bytes']} bytes over ipc to an echo process, one at a time,"
        f" {data['pause_us']} µs apart, so each one wakes it (`bench/hop.py`). Every message through the mesh pays"
        " this in each process it passes; at low rates it is most of the mesh's CPU per record.\n",
        _table(["processes", "echo CPU per message", "echo sleeps per message", "round trip p50", "p99"], rows),
    ]


def markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    parts = [
        "# tickmesh benchmark\n",
        f"{meta.get('date', '')} · {meta.get('cpu_model', '')} · {meta.get('cores', '?')} cores · "
        f"Python {meta.get('python', '')} · pyzmq {meta.get('pyzmq', '')} (libzmq {meta.get('libzmq', '')}) · "
        f"msgspec {meta.get('msgspec', '')}\n",
        f"Command: `{meta.get('command', '')}` · code: {meta.get('code', '?')}\n",
        f"Load average (1, 5, 15 min) at start {meta.get('loadavg_start')}, at end {meta.get('loadavg_end')}; "
        f"run took {meta.get('elapsed_s', '?')} s. Host speed (a fixed pure-Python loop, M iterations/s, "
        f"best of 3): {meta.get('python_speed_start')} at start, {meta.get('python_speed_end')} at end. "
        f"Idle CPUs: {meta.get('idle_states', '?')}.\n",
        "## Targets\n",
        _table(
            ["target", "goal", "measured", "met", "note"],
            [
                [
                    t["target"],
                    t["goal"],
                    t["measured"],
                    {True: "yes", False: "**no**", None: "not measured"}[t["met"]],
                    t["note"],
                ]
                for t in results.get("targets", [])
            ],
        ),  # fmt: skip
        *compare.markdown(results.get("side_by_side")),
    ]
    scenarios = results.get("scenarios", {})
    if scenarios:
        rows = []
        for name, sc in scenarios.items():
            if "error" in sc:
                rows.append([name, "error: " + sc["error"], *[None] * 7])
                continue
            rows.append([name, _rate(sc["offered_per_s"]), f"{sc['ohlcv_symbols_processed_per_min']:,}",
                         *_lat(sc["tick_latency"]), f"{sc['rss_total_mb']:.0f} MB"])  # fmt: skip
        parts += [
            "## The design's scenarios\n",
            _table(
                [
                    "scenario",
                    "offered",
                    "OHLCV symbols/min",
                    "tick p50",
                    "tick p99",
                    "tick p99.9",
                    "tick events",
                    "mesh RSS",
                ],
                rows,
            ),  # fmt: skip
        ]
        for name, sc in scenarios.items():
            if "rss_mb" in sc:
                rss = ", ".join(f"{n} {v:.0f}" for n, v in sc["rss_mb"].items())
                cpu = ", ".join(f"{n} {v:.0f} %" for n, v in sc["cpu_percent"].items())
                parts.append(f"- {name}: RSS MB: {rss}. CPU: {cpu}.\n")
    sustained = results.get("sustained", {})
    for system, data in sustained.items():
        if "error" in data:
            parts.append(f"\n## Sustained throughput: {system}\n\nerror: {data['error']}\n")
            continue
        rows = [[_rate(s["offered"]), _rate(s["sent_per_s"]), _rate(s["processed_per_s"]), *_lat(s["tick_latency"]),
                 "yes" if s["kept_up"] else "no", "yes" if s["held"] else "no", "; ".join(s["why_not"])]
                for s in data["steps"]]  # fmt: skip
        parts += [
            f"\n## Sustained throughput: {system} (each step held {data['hold_s']:g} s)\n",
            f"Highest rate held (kept up and tick p99 < 5 ms): **{_rate(data['max_sustained_per_s'])}**; "
            f"highest rate kept up, latency aside: **{_rate(data['max_kept_up_per_s'])}**\n",
            _table(
                [
                    "offered",
                    "sent",
                    "processed",
                    "tick p50",
                    "tick p99",
                    "tick p99.9",
                    "tick events",
                    "kept up",
                    "held",
                    "why not",
                ],
                rows,
            ),  # fmt: skip
        ]
        parts.append(_hops_table(data["steps"]))
        top = data.get("at_max") or data.get("at_capacity")
        if top:
            cpu = ", ".join(f"{n} {v:.0f} %" for n, v in top["cpu_percent"].items())
            parts.append(f"\nCPU at {_rate(top['offered'])}: {cpu}.\n")
    ceiling = results.get("ceiling", {})
    if ceiling:
        rows = [[k, _rate(_get(v, "delivered_per_s") or _get(v, "processed_per_s")),
                 str(_get(v, "cpu_us_per_record") or "–"), str(_get(v, "router_cpu_us_per_record") or "–"),
                 ", ".join(f"{n} {c:.0f} %" for n, c in (_get(v, "cpu_percent") or {}).items())]
                for k, v in ceiling.items() if isinstance(v, dict)]  # fmt: skip
        routers = _get(results, "plan", "settings", "router", "count") or 1
        parts += [
            f"\n## Transport ceiling (flat out, pre-encoded frames, {routers} router{'s' if routers > 1 else ''})\n",
            _table(["system", "records/s", "CPU µs/record", "router CPU µs/record", "CPU"], rows),
        ]
        parts.append(
            "\nAll fed the same pre-encoded frames as fast as they take them. Pass-through mesh: records processed"
            " by the workers with every channel's rules off (workers send only progress on). Raw ceiling: the same"
            " topology as bare msgspec hops, workers forwarding only a count (the same work). Raw, all hops: every"
            " record carried on through the aggregator-like hop to the SUB.\n"
        )
        if "fraction" in ceiling:
            parts.append(f"\nPass-through mesh reaches **{100 * ceiling['fraction']:.1f} %** of the raw ceiling.\n")
    iso = results.get("isolation")
    if iso and "error" not in iso:
        parts += [
            "\n## Channel isolation (tick latency with and without an OHLCV flood)\n",
            _table(["", "tick p50", "tick p99", "tick p99.9", "tick events"],
                   [["ticks alone", *_lat(iso["without_flood"])], ["+ OHLCV flood", *_lat(iso["with_flood"])]]),
            f"\nTicks at {_rate(iso['tick_rate'])}; flood offered {_rate(iso['flood_rate'])}, sent "
            f"{_rate(iso['flood_sent_per_s'])}, OHLCV processed {_rate(iso['ohlcv_processed_per_s'])}, "
            f"conflated {iso['ohlcv_conflated']:,}.\n",
        ]  # fmt: skip
    dedup = results.get("dedup")
    if dedup:
        rows = [[k.replace("_", " "), v] for k, v in dedup.items() if not isinstance(v, (dict, list))]
        rows += [[k.replace("_", " "), json.dumps(v)] for k, v in dedup.items() if isinstance(v, (dict, list)) and v]
        parts += ["\n## Dedup accuracy\n", _table(["", "value"], rows)]
    parts += _memory_section(results.get("memory"))
    parts += _journal_section(results.get("journal"))
    parts += _hop_section(results.get("hop"))
    errors = results.get("errors", {})
    if errors:
        parts += ["\n## Errors\n", *[f"- {k}: {v}\n" for k, v in errors.items()]]
    parts.append(f"\nChart: {results.get('chart', '')}\n")
    return "\n".join(parts)
