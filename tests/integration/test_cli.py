"""Every console script as a user runs it: --version, --log-level, flags after the subcommand, exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.mesh import ROOT
from tickmesh.cli import EXIT_ENDPOINT, EXIT_OK, EXIT_USAGE, version

MODULES = {  # console script → the module `python -m` runs when the script is not installed
    "tickmesh-router": "router",
    "tickmesh-worker": "workers",
    "tickmesh-aggregator": "aggregator",
    "tickmesh-control": "control",
    "tickmesh-feed": "feeds",
    "tickmesh-subscribe": "subscriber",
    "tickmesh-admin": "control.admin",
    "tickmesh-bench": "bench",
    "tickmesh-keys": "tickmesh.keys",
    "tickmesh": "tickmesh.up",
    "tickmesh-shard": "workers.standalone",
    "tickmesh-journal": "journal",
    "tickmesh-events": "journal.cli",
    "tickmesh-web": "web",
}
WITH_LOG_LEVEL = ["tickmesh-router", "tickmesh-aggregator", "tickmesh-control", "tickmesh-subscribe", "tickmesh-bench",
                  "tickmesh-web"]  # fmt: skip


def run(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The script of this tree (`python -m`, which runs the code under test; the installed script may not)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", MODULES[script], *args], capture_output=True, text=True,
                          timeout=30, cwd=cwd or ROOT, env=env)  # fmt: skip


def test_every_console_script_is_covered_here() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(MODULES)


@pytest.mark.parametrize("script", sorted(MODULES))
def test_version(script: str) -> None:
    done = run(script, "--version")
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, f"{script} {version()}"), done.stderr
    assert version()[0].isdigit()


@pytest.mark.parametrize("script", WITH_LOG_LEVEL)
def test_an_unknown_log_level_is_refused(script: str) -> None:
    done = run(script, "--log-level", "VERBOSE")
    assert done.returncode == EXIT_USAGE
    assert "unknown level 'VERBOSE'" in done.stderr and "Traceback" not in done.stderr


def test_log_levels_are_case_insensitive_and_global_flags_work_after_the_subcommand(tmp_path: Path) -> None:
    assert run("tickmesh-feed", "sim", "--log-level", "bogus").returncode == EXIT_USAGE
    assert run("tickmesh-feed", "sim", "--version").stdout.strip() == f"tickmesh-feed {version()}"
    bad = tmp_path / "bad.toml"
    bad.write_text("[nonsense]\nx = 1\n")
    for args in (["--config", str(bad), "sim"], ["sim", "--config", str(bad)], ["sim", "--log-level", "debug",
                                                                                  "--config", str(bad)]):  # fmt: skip
        done = run("tickmesh-feed", *args)
        assert done.returncode == EXIT_USAGE and "nonsense" in done.stderr, (args, done.stderr)
    keys = tmp_path / "keys"
    refused = run("tickmesh-keys", "check", "--config", str(tmp_path / "missing.toml"))
    assert refused.returncode == EXIT_USAGE and "missing.toml" in refused.stderr
    assert run("tickmesh-keys", "create", "--dir", str(keys), "router").returncode == EXIT_OK


def test_an_endpoint_that_cannot_be_bound_exits_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "tickmesh.toml"
        config.write_text(f'[endpoints]\npublish = "tcp://127.0.0.1:{port}"\nevents = "ipc://{tmp_path}/ev"\n')
        done = run("tickmesh-aggregator", "--config", str(config), cwd=tmp_path)
    assert done.returncode == EXIT_ENDPOINT, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def test_a_web_port_that_cannot_be_bound_exits_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("tickmesh-web", "--listen", f"127.0.0.1:{port}", cwd=tmp_path)
    assert done.returncode == EXIT_ENDPOINT, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
