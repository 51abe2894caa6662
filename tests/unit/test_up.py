"""`tickmesh up`'s pieces: one Procfile, the feed choice, the processes' environment, work beside the mesh."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from honcho.printer import Printer

from tests.mesh import ROOT
from tickmesh import meshrun, up


def test_the_checkouts_procfile_is_the_packaged_one() -> None:
    packaged = ROOT / "tickmesh" / "Procfile"
    assert (ROOT / "Procfile").read_text() == packaged.read_text(), "edit both, or copy tickmesh/Procfile over"
    assert set(meshrun.procfile()) >= {"router", "tick", "ohlcv", "fmv", "aggregator", "control", "feed", "subscriber"}


def test_the_feed_is_chosen_and_every_process_runs_this_interpreter(tmp_path: Path) -> None:
    sim = meshrun.processes(["sim"], python="/opt/py bin/python")
    assert sim["feed"] == "exec '/opt/py bin/python' -m feeds sim"
    assert all(cmd.startswith("exec '/opt/py bin/python' -m ") for cmd in sim.values())
    assert "feed" not in meshrun.processes(["none"])
    (tmp_path / "a b.csv").write_text("")
    replay = meshrun.processes(["replay", str(tmp_path / "a b.csv")], python="py")
    assert replay["feed"] == f"exec py -m tickmesh.hold feeds replay '{tmp_path}/a b.csv'"
    assert meshrun.processes(["polygon"], python="py")["feed"] == "exec py -m feeds polygon"


def test_bad_feed_choices_are_named() -> None:
    assert up.check_feed(["sim"]) is None and up.check_feed(["replay", "x.csv"]) is None
    assert "choose one of sim, replay, polygon, none" in str(up.check_feed(["kafka"]))
    assert "needs at least one FILE" in str(up.check_feed(["replay"]))
    assert "takes no files" in str(up.check_feed(["sim", "x.csv"]))
    assert up.main(["up", "--feed", "replay"]) == 2


def test_config_and_state_dir_reach_the_processes_as_absolute_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = meshrun.environment({"PATH": "/usr/bin"}, "my.toml", "state")
    assert env["TICKMESH_CONFIG"] == str(tmp_path / "my.toml")
    assert env["TICKMESH_STATE_DIR"] == str(tmp_path / "state")
    assert env["PATH"].endswith(":/usr/bin") and env["PYTHONUNBUFFERED"] == "1"
    assert "TICKMESH_CONFIG" not in meshrun.environment({}, None, None)


def test_an_invalid_config_stops_it_before_anything_starts(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[nope]\n")
    assert up.main(["up", "--config", str(bad)]) == 2
    assert "invalid configuration" in capsys.readouterr().err


def test_a_held_process_that_fails_ends_with_its_exit_code(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickmesh.hold", "py_compile", str(tmp_path / "missing.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 1 and "missing.py" in done.stderr  # py_compile's own failure, passed on
    assert "keeps running" not in done.stdout
    assert subprocess.run([sys.executable, "-m", "tickmesh.hold"], capture_output=True, timeout=60).returncode == 2


def test_work_runs_beside_the_mesh_which_stops_when_it_is_done(tmp_path: Path) -> None:
    out = io.StringIO()
    honcho = meshrun.manager(
        {"a": "exec sleep 60", "b": "exec sleep 60"}, dict(os.environ), Printer(out), cwd=str(tmp_path)
    )

    def work(check: Callable[[], None]) -> list[int]:
        check()  # both running
        return sorted(p["pid"] for p in honcho._processes.values())

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # SIG_IGN in a background job
    pids = meshrun.run_beside(honcho, work)
    assert len(pids) == 2 and "a.1 stopped" in out.getvalue() and "b.1 stopped" in out.getvalue()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert {sig: signal.getsignal(sig) for sig in before} == before  # honcho's handlers are gone again


def test_a_process_that_ends_stops_the_work_with_its_name_and_exit_code(tmp_path: Path) -> None:
    procs = {"short": "exec sh -c 'exit 3'", "long": "exec sleep 60"}
    honcho = meshrun.manager(procs, dict(os.environ), Printer(io.StringIO()), cwd=str(tmp_path))

    def work(check: Callable[[], None]) -> None:
        meshrun.poll_until(lambda: check(), 30, "the check to raise")

    with pytest.raises(meshrun.MeshStopped, match="short.1 exited with 3"):
        meshrun.run_beside(honcho, work)
    with pytest.raises(TimeoutError, match="waiting for nothing"):
        meshrun.poll_until(lambda: 0, 0.1, "nothing", interval=0.01)
