"""`tickmesh up` from a checkout, and from a wheel installed in a fresh venv outside it (slow)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tickmesh
from tests.integration.up_harness import private_config, see_events_then_stop
from tests.mesh import ROOT

UNSHIPPED = (".git", "__pycache__", "build", "*.egg-info", ".tickmesh", "*_cache", "bench-results")


def run(args: list[str | Path], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a build step; its stdout (a failure shows its output)."""
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


def test_tickmesh_up_runs_the_whole_mesh_from_an_empty_directory_and_sigterm_stops_it(tmp_path: Path) -> None:
    cwd, state = tmp_path / "empty", tmp_path / "state"
    cwd.mkdir()
    with private_config() as (config, endpoints):
        command = [sys.executable, "-m", "tickmesh.up", "up", "--config", str(config), "--state-dir", str(state)]
        output = see_events_then_stop(command, cwd, dict(os.environ), endpoints)
    assert "Traceback" not in output, output[-3000:]
    assert "subscriber.1 |" in output and "SIGTERM received" in output
    assert not list(cwd.iterdir())  # state went to --state-dir, not the working directory
    assert (state / ".tickmesh" / "admin.token").exists() and (state / ".tickmesh" / "state").is_dir()


def test_a_replay_keeps_the_mesh_running_until_ctrl_c(tmp_path: Path) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    session = ROOT / "tests" / "data" / "polygon_session.jsonl"  # trades and FMV of MSFT
    with private_config() as (config, endpoints):
        command = [sys.executable, "-m", "tickmesh.up", "up", "--config", str(config), "--state-dir", str(tmp_path)]
        command += ["--feed", "replay", str(session)]
        then = "finished; the mesh keeps running until Ctrl-C"
        output = see_events_then_stop(
            command, cwd, dict(os.environ), endpoints, sources=frozenset({"tick", "fmv"}), then=then, sig=signal.SIGINT
        )
    assert "Traceback" not in output, output[-3000:]
    assert "feed.1 stopped (rc=0)" in output and "SIGINT received" in output


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_tickmesh_up(tmp_path: Path) -> None:
    dist, venv, cwd = tmp_path / "dist", tmp_path / "venv", tmp_path / "empty"
    cwd.mkdir()
    assert not tmp_path.resolve().is_relative_to(ROOT)
    # Built from a copy (a build writes build/ and *.egg-info beside the sources), without build
    # isolation: the installed setuptools builds it, so nothing is downloaded.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*UNSHIPPED))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, source])
    (wheel,) = dist.glob("tickmesh-*.whl")
    assert wheel.name.startswith(f"tickmesh-{tickmesh.__version__}-")  # the version pyproject.toml reads from there
    # The system site-packages provide the dependencies; the venv's own tickmesh comes first on sys.path.
    run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # nothing from the checkout
    run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", wheel], env=env)
    where = run([venv / "bin" / "python", "-c", "import router, tickmesh.up; print(router.__file__)"], env=env, cwd=cwd)
    assert where.startswith(str(venv)), where  # the wheel's code, not the checkout's
    share = venv / "share" / "tickmesh"
    assert (share / "proto" / "control" / "v1" / "control.proto").exists()
    assert (share / "examples" / "subscribe.py").exists() and (share / "docs" / "deploy.md").exists()
    assert (share / "deploy" / "systemd" / "tickmesh-worker@.service").exists()
    assert (share / "deploy" / "k8s" / "tickmesh.yaml").exists()
    with private_config() as (config, endpoints):
        command = [str(venv / "bin" / "tickmesh"), "up", "--config", str(config), "--state-dir", str(tmp_path / "s")]
        output = see_events_then_stop(command, cwd, env, endpoints)
    assert "Traceback" not in output, output[-3000:]
    assert not list(cwd.iterdir())
    for script in ("tickmesh-shard", "tickmesh-admin", "tickmesh-router"):
        assert (venv / "bin" / script).exists()
