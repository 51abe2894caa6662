"""With default settings the links between mesh processes are private, and one state folder runs one mesh."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.mesh import Mesh, collect, free_port, poll_until
from tickmesh.cli import EXIT_ENDPOINT
from tickmesh.config import load_config, to_toml
from tickmesh.endpoints import INTERNAL
from tickmesh.schema import Trade

S = 1_000_000_000
SYSTEM_PYTHON = "/usr/bin/python3"  # any user can run it (the test's own interpreter may live under /root)


def default_links(mesh: Mesh) -> Mesh:
    """The mesh with only the public sockets moved to free ports: every private link at its default."""
    public = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("ingest", "sync", "publish", "replay")}
    public.update(grpc=f"127.0.0.1:{free_port()}", prometheus=f"127.0.0.1:{free_port()}")
    mesh.config_path.write_text(to_toml({"endpoints": public, "control": {"status_interval_s": 0.2}}))
    mesh.config = load_config(str(mesh.config_path), env={}, state_dir=str(mesh.dir))
    mesh.endpoints = mesh.config.endpoints
    return mesh


def test_private_links_are_unix_sockets_in_a_folder_only_the_mesh_user_can_enter(
    mesh_factory: Callable[..., Mesh],
) -> None:
    mesh = default_links(mesh_factory()).start()
    run = mesh.dir / ".tickmesh" / "run"
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    for name in INTERNAL:
        endpoint = getattr(mesh.endpoints, name)
        assert endpoint.startswith(f"ipc://{run}/"), (name, endpoint)
    sockets = {p.name for p in run.iterdir()}
    assert {"acks", "tick-0", "ohlcv-0", "fmv-0", "events", "control-status"} <= sockets
    sub = mesh.subscriber()
    now = time.time_ns()
    mesh.push([Trade("PRIV", 10.0 + i, 1, now + i * 2 * S) for i in range(3)])
    assert [p.event.price for p in collect(sub, lambda got: len(got) >= 2)] == [11.0, 12.0]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser") or not Path(SYSTEM_PYTHON).exists(),
    reason="needs root to run a probe as another user",
)
def test_another_local_user_cannot_connect_to_any_private_link(mesh_factory: Callable[..., Mesh]) -> None:
    mesh = default_links(mesh_factory()).start()
    os.chmod(mesh.dir, 0o755)  # the mkdtemp folder itself is private: open it, the run folder must hold
    paths = [str(p) for p in (mesh.dir / ".tickmesh" / "run").iterdir()]
    probe = (
        "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(path)\n"
        "        print('connected', path)\n"
        "    except PermissionError:\n"
        "        print('refused', path)\n"
    )
    out = subprocess.run(
        ["runuser", "-u", "nobody", "--", SYSTEM_PYTHON, "-c", probe, *paths],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split("\n")
    assert sorted(line.split()[0] for line in out if line) == ["refused"] * len(paths), out


def test_a_second_mesh_on_the_same_state_folder_refuses_to_start(mesh_factory: Callable[..., Mesh]) -> None:
    mesh = default_links(mesh_factory()).start()
    mesh.spawn("control", "-m", "control")  # (it takes the bus over from the harness: not needed below)
    poll_until(lambda: "gRPC listening" in mesh.log("control"), 20, what="the first control running")
    for name, module in (("router2", "router"), ("aggregator2", "aggregator"), ("control2", "control")):
        assert mesh.spawn(name, "-m", module).wait(20) == EXIT_ENDPOINT, mesh.log(name)
        assert "already running with state folder" in mesh.log(name)
    sub = mesh.subscriber()
    now = time.time_ns()
    mesh.push([Trade("ONE", 10.0 + i, 1, now + i * 2 * S) for i in range(3)])
    assert len(collect(sub, lambda got: len(got) >= 2)) == 2
