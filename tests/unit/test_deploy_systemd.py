"""deploy/systemd: each unit passes `systemd-analyze verify` silently and has what an operator relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from honcho.manager import KILL_WAIT

from tests.launchers import console_scripts, write_launchers
from tests.mesh import ROOT

UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
PREFIX = "/opt/tickmesh/bin/"


def test_there_is_a_unit_per_mesh_process_and_the_web_view() -> None:
    names = {u.name for u in UNITS}
    processes = ("router", "aggregator", "control", "worker@", "journal", "web")
    assert names == {f"tickmesh-{n}.service" for n in processes}


def test_the_web_view_yields_the_cores_to_the_mesh_and_starts_after_control() -> None:
    web = settings(ROOT / "deploy" / "systemd" / "tickmesh-web.service")
    assert int(web["CPUWeight"]) < 100  # systemd's default weight, every mesh unit's
    assert "tickmesh-control.service" in web["After"].split()  # its token file is written by then, on its host


def test_the_journal_unit_runs_only_on_cpu_time_no_other_unit_wants() -> None:
    assert settings(ROOT / "deploy" / "systemd" / "tickmesh-journal.service")["CPUWeight"] == "idle"


def settings(unit: Path) -> dict[str, str]:
    return dict(re.findall(r"^(\w+)=(.*)$", unit.read_text(), re.MULTILINE))


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_each_unit_runs_a_console_script_under_the_operators_rules(unit: Path) -> None:
    s = settings(unit)
    command = s["ExecStart"].split()
    assert command[0].startswith(PREFIX) and command[0].removeprefix(PREFIX) in console_scripts()
    if unit.name == "tickmesh-worker@.service":
        assert command[1:] == ["%i"]  # tickmesh-shard tick-0
    assert (s["User"], s["StateDirectory"], s["Restart"]) == ("tickmesh", "tickmesh", "on-failure")
    assert int(s["TimeoutStopSec"]) == KILL_WAIT  # the stop grace every process keeps today
    assert s["WantedBy"] == "tickmesh.target" and s["PartOf"] == "tickmesh.target"


@pytest.mark.parametrize("unit", [*UNITS, ROOT / "deploy" / "systemd" / "tickmesh.target"], ids=lambda u: u.name)
def test_systemd_analyze_verify_prints_nothing(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "install Debian's systemd package (.ci/run does)"
    # verify checks that ExecStart exists: point it at launchers of this tree's console scripts
    bin_dir = write_launchers(tmp_path / "bin")
    (tmp_path / "units").mkdir()
    copy = tmp_path / "units" / unit.name
    copy.write_text(unit.read_text().replace(PREFIX, f"{bin_dir}/"))
    if unit.suffix == ".service":
        assert copy.read_text() != unit.read_text()
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # it exits 0 on an unknown key; only silence means the unit is clean
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
