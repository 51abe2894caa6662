"""The mesh and the single-process peer side by side: CPU per record at the same offered rates, the headline figures."""

from __future__ import annotations

from typing import Any

DRIVERS = ("load", "flood", "sink", "ceiling.sub")  # the bench's own processes: not part of the system measured
ROUTERS = ("router", "ceiling.router")
HELD_RATIO_GOAL = 1.5  # mesh held rate ÷ peer's, at least
CPU_RATIO_GOAL = 1.15  # mesh CPU per record ÷ peer's, at most
TICK_P99_GOALS_US = {10_000: 1_000, 100_000: 2_000}  # the mesh's tick p99, below


def cpu_us_per_record(step: dict[str, Any] | None) -> float | None:
    """µs of CPU the system spent per record it processed in one ramp step (all its processes, none of the bench's)."""
    if not step or not step.get("processed_per_s"):
        return None
    return cpu_per_record(step.get("cpu_percent", {}), step["processed_per_s"])["cpu_us_per_record"]


def cpu_per_record(cpu_percent: dict[str, float], rate: float) -> dict[str, float]:
    """µs of CPU per record at `rate` records/s: every process of the system under test (not the bench's
    own, which drive and measure it), and the routers alone."""
    if rate <= 0:
        return {}
    system = {n: v for n, v in cpu_percent.items() if not n.startswith(DRIVERS)}
    routers = sum(v for n, v in system.items() if n.startswith(ROUTERS))
    return {
        "cpu_us_per_record": round(sum(system.values()) / 100 / rate * 1e6, 3),
        "router_cpu_us_per_record": round(routers / 100 / rate * 1e6, 3),
    }


def system_cpu_percent(step: dict[str, Any]) -> float:
    """The system's CPU in a step, % of one core, summed over its processes (load generator and sink left out)."""
    return round(sum(v for name, v in step.get("cpu_percent", {}).items() if not name.startswith(DRIVERS)), 1)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def _steps(ramp: dict[str, Any]) -> dict[float, dict[str, Any]]:
    return {s["offered"]: s for s in ramp.get("steps", [])}


def per_step(mesh: dict[str, Any], peer: dict[str, Any]) -> list[dict[str, Any]]:
    """CPU per record at every offered rate either system ran (None where one did not run it)."""
    ms, ps = _steps(mesh), _steps(peer)
    rows = []
    for rate in sorted(set(ms) | set(ps)):
        m, p = ms.get(rate), ps.get(rate)
        mesh_us, peer_us = cpu_us_per_record(m), cpu_us_per_record(p)
        rows.append({
            "offered": rate,
            "mesh_cpu_percent": None if m is None else system_cpu_percent(m),
            "peer_cpu_percent": None if p is None else system_cpu_percent(p),
            "mesh_us_per_record": mesh_us,
            "peer_us_per_record": peer_us,
            "ratio": ratio(mesh_us, peer_us),
            "both_kept_up": bool(m and p and m["kept_up"] and p["kept_up"]),
        })  # fmt: skip
    return rows


def _p99(step: dict[str, Any] | None) -> float | None:
    return None if step is None else step.get("tick_latency", {}).get("p99_us")


def headline(mesh: dict[str, Any], peer: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's figures: held and kept-up rates, tick p99 at 10k and 100k/s, CPU per record (with goals)."""
    held_ratio = ratio(mesh.get("max_sustained_per_s"), peer.get("max_sustained_per_s"))
    out: dict[str, Any] = {
        "held": {"mesh": mesh.get("max_sustained_per_s"), "peer": peer.get("max_sustained_per_s"),
                 "ratio": held_ratio, "goal": f"≥ {HELD_RATIO_GOAL} ×",
                 "met": None if held_ratio is None else held_ratio >= HELD_RATIO_GOAL},
        "kept_up": {"mesh": mesh.get("max_kept_up_per_s"), "peer": peer.get("max_kept_up_per_s"),
                    "ratio": ratio(mesh.get("max_kept_up_per_s"), peer.get("max_kept_up_per_s"))},
    }  # fmt: skip
    for rate, goal_us in TICK_P99_GOALS_US.items():
        m, p = _steps(mesh).get(rate), _steps(peer).get(rate)
        mesh_p99 = _p99(m)
        out[f"tick_p99_us_at_{rate}"] = {
            "mesh": mesh_p99, "peer": _p99(p), "ratio": ratio(mesh_p99, _p99(p)),
            "goal": f"mesh < {goal_us / 1000:g} ms",
            "met": None if mesh_p99 is None else bool(m and m["kept_up"] and mesh_p99 < goal_us),
        }  # fmt: skip
    common = [r for r in rows if r["both_kept_up"] and r["ratio"] is not None]
    top = max(common, key=lambda r: r["offered"], default=None)
    out["cpu_us_per_record"] = {
        "at": None if top is None else top["offered"],
        "mesh": None if top is None else top["mesh_us_per_record"],
        "peer": None if top is None else top["peer_us_per_record"],
        "ratio": None if top is None else top["ratio"],
        "goal": f"≤ {CPU_RATIO_GOAL} ×",
        "met": None if top is None else top["ratio"] <= CPU_RATIO_GOAL,
    }
    return out


def side_by_side(results: dict[str, Any]) -> dict[str, Any] | None:
    """Both systems' figures in one place (for report.json and report.md); None unless both ramps ran."""
    sustained = results.get("sustained") or {}
    mesh, peer = sustained.get("mesh"), sustained.get("peer")
    if not isinstance(mesh, dict) or not isinstance(peer, dict) or "steps" not in mesh or "steps" not in peer:
        return None
    rows = per_step(mesh, peer)
    return {"headline": headline(mesh, peer, rows), "cpu_per_record": rows}


# -- markdown ----------------------------------------------------------------------------------
def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}/s"


def _ms(us: float | None) -> str:
    return "—" if us is None else f"{us / 1000:.3g} ms"


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} µs"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ×"


def _met(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[value]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(data: dict[str, Any] | None) -> list[str]:
    """The side-by-side section of report.md (nothing when the run lacked one of the two ramps)."""
    if not data:
        return []
    h = data["headline"]
    cpu = h["cpu_us_per_record"]
    lines = [
        "\n## Mesh and single-process peer, side by side\n",
        _row(["figure", "mesh", "peer", "mesh ÷ peer", "goal", "met"]),
        "|---|---|---|---|---|---|",
        _row(["highest rate held (kept up and tick p99 < 5 ms)", _rate(h["held"]["mesh"]), _rate(h["held"]["peer"]),
              _x(h["held"]["ratio"]), h["held"]["goal"], _met(h["held"]["met"])]),
        _row(["highest rate kept up, latency aside", _rate(h["kept_up"]["mesh"]), _rate(h["kept_up"]["peer"]),
              _x(h["kept_up"]["ratio"]), "", ""]),
    ]  # fmt: skip
    for rate in TICK_P99_GOALS_US:
        t = h[f"tick_p99_us_at_{rate}"]
        lines.append(_row([f"tick p99 at {rate:,}/s", _ms(t["mesh"]), _ms(t["peer"]), _x(t["ratio"]), t["goal"],
                           _met(t["met"])]))  # fmt: skip
    lines.append(_row([f"CPU per record at {_rate(cpu['at'])} (highest rate both kept up)", _us(cpu["mesh"]),
                       _us(cpu["peer"]), _x(cpu["ratio"]), cpu["goal"], _met(cpu["met"])]))  # fmt: skip
    lines += [
        "\nCPU per record at each offered rate: the system's CPU (every process of it; not the load generator or"
        " the subscriber) over the records it processed, in the same window.\n",
        _row(["offered", "mesh CPU", "mesh per record", "peer CPU", "peer per record", "mesh ÷ peer"]),
        "|---|---|---|---|---|---|",
    ]
    for r in data["cpu_per_record"]:
        mesh_cpu, peer_cpu = r["mesh_cpu_percent"], r["peer_cpu_percent"]
        lines.append(_row([_rate(r["offered"]), "—" if mesh_cpu is None else f"{mesh_cpu:.0f} %",
                           _us(r["mesh_us_per_record"]), "—" if peer_cpu is None else f"{peer_cpu:.0f} %",
                           _us(r["peer_us_per_record"]), _x(r["ratio"])]))  # fmt: skip
    return ["\n".join(lines) + "\n"]
