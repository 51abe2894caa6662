"""The three systems under test, each started as a Stage: the mesh, the single-process peer, the raw ceiling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.drive import BASE_SETTINGS
from bench.procs import Stage, merge
from tickmesh.config import CHANNELS


@dataclass
class System:
    """A started system: who processes records (their `*.processed` counters), who holds the backlog."""

    kind: str  # mesh | mesh_journal | passthrough | peer | ceiling | ceiling_all_hops
    stage: Stage
    processors: list[str]  # processes whose `<channel>.processed` counters count the work done
    backlog: list[str]  # processes whose `*.queue_depth` gauges hold records waiting
    reporters: list[str]  # every process that reports on the bus

    def close(self) -> None:
        self.stage.close()


PASS_THROUGH = {"channels": {ch: {"rules": {"enabled": False}} for ch in CHANNELS}}


def start(kind: str, settings: dict[str, Any] | None = None, name: str | None = None) -> System:
    """Start a system of `kind`; on failure everything already started is stopped again."""
    extra = merge(PASS_THROUGH, settings or {}) if kind == "passthrough" else settings or {}
    stage = Stage(name or kind, merge(BASE_SETTINGS, extra))
    try:
        if kind in ("mesh", "passthrough", "mesh_journal"):
            names = stage.start_mesh()
            workers = [n for n in names if n.startswith("worker.")]
            if kind == "mesh_journal":  # the event journal beside the mesh (SQLite in the stage's state folder)
                stage.spawn("journal", "-m", "journal")
                stage.wait_reporting(["journal"], timeout=30)
                names.append("journal")
            return System(kind, stage, workers, stage.router_names(), names)
        if kind == "peer":
            stage.spawn("peer", "-m", "bench.peer")
            stage.wait_reporting(["peer"], timeout=30)
            return System(kind, stage, ["peer"], ["peer"], ["peer"])
        if kind in ("ceiling", "ceiling_all_hops"):
            routers = [f"ceiling.router.{i}" if i else "ceiling.router" for i in range(stage.config.router.count)]
            names = [*routers, *(f"ceiling.worker.{ch}" for ch in CHANNELS), "ceiling.aggregator", "ceiling.sub"]
            forward = ["--forward", "all" if kind == "ceiling_all_hops" else "progress"]
            for name in names:
                role = name.split(".")[1:]
                if role[0] == "router":
                    role = ["router", "--index", role[1] if len(role) > 1 else "0"]
                stage.spawn(name, "-m", "bench.ceiling", *role, *forward)
            stage.wait_reporting(names, timeout=30)
            return System(kind, stage, [n for n in names if ".worker." in n], [], names)
    except BaseException:
        stage.close()
        raise
    stage.close()
    raise ValueError(f"unknown system {kind}")
