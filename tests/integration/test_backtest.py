"""`tickmesh backtest`: one command per run into a mesh of its own, journaled by name, compared with diff."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import JournalBackend
from tickmesh.config import to_toml

T0 = 1_712_323_800 * 10**9  # 2024-04-05 13:30 UTC: history, in one session
HEADER = "ticker,conditions,correction,exchange,id,participant_timestamp,price,sequence_number,sip_timestamp,size"
TIGHT = ["--set", "tick.band4_high_low_pct=0.02", "--set", "tick.band4_high_low_usd=0.01"]
LOOSE = ["--set", "tick.band4_high_low_pct=1.5", "--set", "tick.band4_high_low_usd=1.0"]


def trades_file(folder: Path) -> Path:
    """A Polygon trades flat file: four tickers random-walking around $50 for ten minutes."""
    rng, lines = random.Random(15), [HEADER]
    for t, ticker in enumerate(("AAA", "BBB", "CCC", "DDD")):
        price = 50.0 + t
        for i in range(400):
            price = round(max(1.0, price * (1 + rng.gauss(0, 0.002))), 2)
            at = T0 + i * 1_500_000_000 + t
            lines.append(f'{ticker},"",0,11,{i},{at},{price},{i + 1},{at},{rng.randint(1, 500)}')
    path = folder / "trades.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def backtest(folder: Path, backend: JournalBackend, *args: str) -> subprocess.CompletedProcess[str]:
    config = folder / "tickmesh.toml"
    config.write_text(to_toml({"journal": backend.settings}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")} | backend.env
    argv = [sys.executable, "-m", "tickmesh.up", "backtest", *args, "--config", str(config),
            "--state-dir", str(folder / "state")]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=folder, env=env)


def events(folder: Path, backend: JournalBackend, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")} | backend.env
    argv = [sys.executable, "-m", "journal.cli", "--config", str(folder / "tickmesh.toml"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=folder, env=env)


def summary(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3_000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.timeout(600)
def test_two_runs_with_other_thresholds_differ_and_the_same_settings_twice_do_not(
    tmp_path: Path, journal_backend: JournalBackend
) -> None:
    data = trades_file(tmp_path)
    tight = summary(backtest(tmp_path, journal_backend, "tight", str(data), *TIGHT, "--json"))
    assert tight["sent"] == 1_600 and tight["journaled"] == tight["published"]
    assert Path(str(tight["state"])) == tmp_path / "state" / "runs" / "tight"
    loose = summary(backtest(tmp_path, journal_backend, "loose", str(data), *LOOSE, "--json"))
    again = summary(backtest(tmp_path, journal_backend, "tight-again", str(data), *TIGHT, "--json"))
    assert again["events"] == tight["events"] and tight["journaled"] > loose["journaled"] > 0  # type: ignore[operator]

    diff = events(tmp_path, journal_backend, "diff", "tight", "loose", "--json")
    only = [json.loads(line)["only_in"] for line in diff.stdout.splitlines()]
    assert "tight" in only and diff.returncode == 0, diff.stderr
    same = events(tmp_path, journal_backend, "diff", "tight", "tight-again", "--json")
    assert same.returncode == 0 and same.stdout == "", same.stdout[:2_000]
    assert f"in both: {tight['journaled']}" in same.stderr

    refused = backtest(tmp_path, journal_backend, "tight", str(data), *LOOSE)
    assert refused.returncode == 2 and "already in the journal" in refused.stderr and "Traceback" not in refused.stderr
    replaced = summary(backtest(tmp_path, journal_backend, "tight", str(data), *LOOSE, "--replace", "--json"))
    assert replaced["events"] == loose["events"]


def test_bad_names_settings_and_files_are_refused_before_anything_starts(tmp_path: Path) -> None:
    backend = JournalBackend("sqlite", {"backend": "sqlite", "path": str(tmp_path / "j.sqlite3")}, {})
    data = str(trades_file(tmp_path))
    for args, message in (
        (["../up", data], "run name"),
        ([".hidden", data], "run name"),
        (["ok\n", data], "run name"),  # `$` alone would let a trailing newline into a folder's name
        (["ok", str(tmp_path / "absent.csv")], "no such file"),
        (["ok", data, "--set", "tick=1"], "CHANNEL.KEY=VALUE"),
        (["ok", data, "--set", "tick.no_such_rule=1"], "no_such_rule"),
        (["ok", data, "--set", "tick.band4_high_low_pct=-1"], "band4_high_low_pct"),
    ):
        done = backtest(tmp_path, backend, *args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "state" / "runs").exists()
