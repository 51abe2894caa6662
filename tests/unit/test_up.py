"""`tickmesh up`'s pieces: one Procfile, the feed choice, the processes' environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.mesh import ROOT
from tickmesh import up


def test_the_checkouts_procfile_is_the_packaged_one() -> None:
    packaged = ROOT / "tickmesh" / "Procfile"
    assert (ROOT / "Procfile").read_text() == packaged.read_text(), "edit both, or copy tickmesh/Procfile over"
    assert set(up.procfile()) >= {"router", "tick", "ohlcv", "fmv", "aggregator", "control", "feed", "subscriber"}


def test_the_feed_is_chosen_and_every_process_runs_this_interpreter(tmp_path: Path) -> None:
    sim = up.processes(["sim"], python="/opt/py bin/python")
    assert sim["feed"] == "exec '/opt/py bin/python' -m feeds sim"
    assert all(cmd.startswith("exec '/opt/py bin/python' -m ") for cmd in sim.values())
    assert "feed" not in up.processes(["none"])
    (tmp_path / "a b.csv").write_text("")
    replay = up.processes(["replay", str(tmp_path / "a b.csv")], python="py")
    assert replay["feed"] == f"exec py -m tickmesh.hold feeds replay '{tmp_path}/a b.csv'"
    assert up.processes(["polygon"], python="py")["feed"] == "exec py -m feeds polygon"


def test_bad_feed_choices_are_named() -> None:
    assert up.check_feed(["sim"]) is None and up.check_feed(["replay", "x.csv"]) is None
    assert "choose one of sim, replay, polygon, none" in str(up.check_feed(["kafka"]))
    assert "needs at least one FILE" in str(up.check_feed(["replay"]))
    assert "takes no files" in str(up.check_feed(["sim", "x.csv"]))
    assert up.main(["up", "--feed", "replay"]) == 2


def test_config_and_state_dir_reach_the_processes_as_absolute_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = up.environment({"PATH": "/usr/bin"}, "my.toml", "state")
    assert env["TICKMESH_CONFIG"] == str(tmp_path / "my.toml")
    assert env["TICKMESH_STATE_DIR"] == str(tmp_path / "state")
    assert env["PATH"].endswith(":/usr/bin") and env["PYTHONUNBUFFERED"] == "1"
    assert "TICKMESH_CONFIG" not in up.environment({}, None, None)


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
