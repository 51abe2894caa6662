"""--health: every mesh process answers GET /livez and /readyz; a stopped worker fails its own and the router's,
a stopped aggregator the journal's."""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request

from tests.mesh import Mesh, free_port, poll_until


def probe(port: int, path: str) -> int:
    """The HTTP status of GET path, or 0 when there is no answer (refused, or no reply within 1 s)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def body(port: int, path: str) -> str:
    """The text of the answer to GET path (a 503's reason too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as reply:
            return str(reply.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def all_answer(ports: dict[str, int], path: str, code: int) -> bool:
    return all(probe(port, path) == code for port in ports.values())


def start_with_probes(mesh: Mesh) -> dict[str, int]:
    """Router, aggregator, control, journal, the tick shard unsupervised and the other channels' supervisors
    (the ohlcv one through TICKMESH_HEALTH: its shards must not inherit it)."""
    ports: dict[str, int] = {}

    def spawn(name: str, *args: str) -> None:
        ports[name] = free_port()
        mesh.spawn(name, *args, "--health", f"127.0.0.1:{ports[name]}")

    spawn("router", "-m", "router")
    spawn("worker.tick.0", "-m", "workers.standalone", "tick-0")
    ports["supervisor.ohlcv"] = free_port()
    mesh.env["TICKMESH_HEALTH"] = f"127.0.0.1:{ports['supervisor.ohlcv']}"
    mesh.spawn("supervisor.ohlcv", "-m", "workers", "ohlcv")
    del mesh.env["TICKMESH_HEALTH"]
    spawn("supervisor.fmv", "-m", "workers", "fmv")
    spawn("aggregator", "-m", "aggregator")
    spawn("control", "-m", "control")
    spawn("journal", "-m", "journal")
    return ports


def test_probes_answer_in_a_healthy_mesh_and_a_stopped_worker_fails_its_own_and_the_routers(mesh_factory) -> None:
    mesh = mesh_factory()
    mesh.env["TICKMESH_STATE_DIR"] = str(mesh.dir / "state")
    ports = start_with_probes(mesh)
    poll_until(lambda: all_answer(ports, "/livez", 200), 20, what="every /livez 200")
    poll_until(lambda: all_answer(ports, "/readyz", 200), 20, what="every /readyz 200")
    assert probe(ports["router"], "/nope") == 404

    victim = mesh.procs["worker.tick.0"].pid
    os.kill(victim, signal.SIGSTOP)
    try:
        poll_until(lambda: probe(ports["worker.tick.0"], "/livez") != 200, 10, what="the stopped worker's /livez")
        poll_until(lambda: probe(ports["router"], "/readyz") == 503, 15, what="the router's /readyz 503")
        assert probe(ports["router"], "/livez") == 200  # the router itself is fine
    finally:
        os.kill(victim, signal.SIGCONT)
    poll_until(lambda: probe(ports["worker.tick.0"], "/livez") == 200, 10, what="the worker's /livez again")
    poll_until(lambda: all_answer(ports, "/readyz", 200), 15, what="every /readyz 200 again")

    aggregator = mesh.procs["aggregator"].pid  # the journal hears it each heartbeat (0.2 s here), or is not ready
    os.kill(aggregator, signal.SIGSTOP)
    try:
        poll_until(lambda: probe(ports["journal"], "/readyz") == 503, 10, what="the journal's /readyz 503")
        assert "aggregator not heard" in body(ports["journal"], "/readyz")
    finally:
        os.kill(aggregator, signal.SIGCONT)
    poll_until(lambda: probe(ports["journal"], "/readyz") == 200, 10, what="the journal's /readyz 200 again")
