"""tickmesh-admin as a user runs it: a subprocess against a real control process, output checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration.control_helpers import Control, FakeProcess, running_control
from tests.mesh import poll_until

ALL = ["tick", "ohlcv", "fmv"]
ADMIN = [exe] if (exe := shutil.which("tickmesh-admin")) else [sys.executable, "-m", "control.admin"]


@pytest.fixture(scope="module")
def control() -> Iterator[Control]:
    with running_control(ack_timeout_s=2.0) as c:
        yield c


def admin(
    c: Control, *args: str, token: str | None = "default", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run tickmesh-admin against `c`; token "default" passes c's token with --token."""
    base = [*ADMIN, "--target", c.target]
    if token == "default":
        base += ["--token", str(c.token)]
    elif token is not None:
        base += ["--token", token]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")}
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=30, env={**clean, **(env or {})},
                          cwd=c.dir)  # fmt: skip


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tickmesh-admin: "), result.stderr
    return lines[0]


def test_health_needs_no_token(control: Control) -> None:
    result = admin(control, "health", token=None)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING")
    result = admin(control, "--json", "health", token=None)
    assert json.loads(result.stdout) == {"service": "", "status": "SERVING"}


def test_channels_as_a_table_and_as_json(control: Control) -> None:
    result = admin(control, "channels")
    assert result.returncode == 0, result.stderr
    assert "channels · config version" in result.stdout
    for text in ("tick", "ohlcv", "fmv", "trade", "fair_market_value", "big_move_pct=", "conflate"):
        assert text in result.stdout
    data = json.loads(admin(control, "--json", "channels").stdout)
    assert [c["name"] for c in data["channels"]] == ALL
    assert data["channels"][2]["batch_size"] == 50 and data["channels"][0]["paused"] is False


def test_set_pause_and_resume_say_who_applied_the_change(control: Control) -> None:
    with FakeProcess(control, "worker.ohlcv.0", ["ohlcv"]) as worker:
        poll_until(lambda: control.live("worker.ohlcv.0"), what="live")
        before = control.metrics().config_version
        result = admin(control, "set", "ohlcv", "big_move_pct=5", "batch_size=20")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            f"ohlcv: big_move_pct=5.0 batch_size=20 → config version {before + 1}",
            "applied by: worker.ohlcv.0",
        ]
        assert worker.current.channels.ohlcv.rules.big_move_pct == 5.0
        paused = json.loads(admin(control, "--json", "pause", "ohlcv").stdout)
        assert (paused["config_version"], paused["acked"], paused["channel"]["paused"]) == (
            before + 2, ["worker.ohlcv.0"], True)  # fmt: skip
        result = admin(control, "resume", "ohlcv")
        assert result.stdout.startswith(f"ohlcv: paused=false → config version {before + 3}")
        assert not worker.current.channels.ohlcv.paused


def test_metrics_table_json_and_watch(control: Control) -> None:
    counters = {"fmv.received": 1234, "fmv.rejected.nan_price": 7, "fmv.events.fmv_deviation": 3}
    with FakeProcess(control, "router", ALL, counters=counters, gauges={"fmv.latency_p99_us": 420.0}):
        poll_until(lambda: control.live("router"), what="live")
        table = admin(control, "metrics")
        assert table.returncode == 0, table.stderr
        fmv_row = next(line for line in table.stdout.splitlines() if line.startswith("│ fmv"))
        assert "1,234" in fmv_row and "- / 0.4" in fmv_row  # p99 420 µs shown in ms
        assert "nan_price 7" in table.stdout and "fmv_deviation 3" in table.stdout
        assert "router" in table.stdout and "control" in table.stdout and "aggregator: published" in table.stdout
        data = json.loads(admin(control, "--json", "metrics", "--channel", "fmv").stdout)
        (fmv,) = data["channels"]
        assert (fmv["received"], fmv["rejected"], fmv["latency_p99_us"]) == (1234, {"nan_price": 7}, 420.0)
        watch = admin(control, "--json", "metrics", "--watch", "--interval", "0.1", "--count", "3")
        assert watch.returncode == 0, watch.stderr
        snapshots = [json.loads(line) for line in watch.stdout.splitlines()]
        assert len(snapshots) == 3 and snapshots[0]["time_ns"] < snapshots[2]["time_ns"]


def test_metrics_flags_a_process_whose_clock_is_off_from_the_routers(control: Control) -> None:
    with (
        FakeProcess(control, "router", ALL),
        FakeProcess(control, "worker.fmv.0", ["fmv"], clock_shift_ns=2_500_000_000),  # 2.5 s ahead
    ):
        poll_until(lambda: control.live("router") and control.live("worker.fmv.0"), what="both live")
        data = json.loads(admin(control, "--json", "metrics").stdout)
        offsets = {p["process"]: p.get("clock_offset_ms", 0.0) for p in data["processes"]}
        assert abs(offsets["router"]) < 2_500 / 2 < offsets["worker.fmv.0"] <= 2_500  # never over the true offset
        table = admin(control, "metrics", "--wide", env={"COLUMNS": "200"}).stdout
        (line,) = [line for line in table.splitlines() if line.startswith("CLOCK SKEW")]
        assert line.startswith("CLOCK SKEW: worker.fmv.0 +2,") and line.count(" ms from the router") == 1


def test_global_flags_work_after_the_command_too(control: Control) -> None:
    before = admin(control, "--json", "metrics", "--channel", "fmv")
    after = subprocess.run([*ADMIN, "metrics", "--json", "--channel", "fmv", "--target", control.target,
                            "--token", str(control.token), "--timeout", "5"],
                           capture_output=True, text=True, timeout=30, cwd=control.dir)  # fmt: skip
    assert after.returncode == 0, after.stderr
    assert [c["channel"] for c in json.loads(after.stdout)["channels"]] == ["fmv"]
    assert json.loads(before.stdout).keys() == json.loads(after.stdout).keys()
    assert json.loads(admin(control, "channels", "--json").stdout)["channels"][0]["name"] == "tick"


def test_the_metrics_table_fits_80_columns_and_wide_shows_every_column(control: Control) -> None:
    counters = {"tick.received": 39_553_000, "tick.conflated": 5, "tick.dropped_oldest": 6, "tick.paused_dropped": 7}
    with FakeProcess(control, "worker.ohlcv.0", ALL, counters=counters, gauges={"tick.latency_p99_us": 12_345.0}):
        poll_until(lambda: control.live("worker.ohlcv.0"), what="live")
        narrow = admin(control, "metrics", env={"COLUMNS": "80"})
        assert narrow.returncode == 0, narrow.stderr
        lines = narrow.stdout.splitlines()
        assert max(map(len, lines)) <= 80, narrow.stdout
        assert "…" not in narrow.stdout  # nothing cut
        tick_row = next(line for line in lines if line.startswith("│ tick"))
        assert "39,553,000" in tick_row and "│   18 │" in tick_row and "12.3" in tick_row  # shed = 5 + 6 + 7
        assert "worker.ohlcv.0" in narrow.stdout
        wide = admin(control, "metrics", "--wide", env={"COLUMNS": "200"})
        for header in ("routed", "conflated", "batches", "queue", "proc µs", "role", "host", "version"):
            assert header in wide.stdout, header
        watch = admin(control, "metrics", "--watch", "--interval", "0.1", "--count", "2")
        assert watch.returncode == 0 and watch.stdout.endswith("┘\n"), repr(watch.stdout[-40:])


def test_errors_are_one_clear_line_with_an_exit_code(control: Control) -> None:
    result = admin(control, "channels", token="wrong")
    assert result.returncode == 4 and "invalid admin token" in one_clear_line(result)
    result = admin(control, "set", "ohlcv", "big_move_pct=5000")
    assert result.returncode == 1 and "big_move_pct" in one_clear_line(result) and "1000" in result.stderr
    result = admin(control, "pause", "forex")
    assert result.returncode == 1 and "unknown channel 'forex'" in one_clear_line(result)
    result = admin(control, "set", "ohlcv", "big_move_pct")
    assert result.returncode == 2 and "KEY=VALUE" in one_clear_line(result)
    unreachable = subprocess.run([*ADMIN, "--target", "127.0.0.1:1", "--token", "x", "channels"],
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
    assert unreachable.returncode == 3 and "cannot reach tickmesh-control at 127.0.0.1:1" in one_clear_line(unreachable)


def test_the_token_comes_from_the_environment_or_the_token_file() -> None:
    with running_control(token=None, token_file=None) as c:  # writes .tickmesh/admin.token in its cwd
        assert admin(c, "channels", token=None).returncode == 0  # read from ./.tickmesh/admin.token
        token = (c.dir / ".tickmesh" / "admin.token").read_text().strip()
        (c.dir / ".tickmesh" / "admin.token").unlink()
        result = admin(c, "channels", token=None)
        assert result.returncode == 4 and "no admin token" in one_clear_line(result)
        assert admin(c, "channels", token=None, env={"TICKMESH_ADMIN_TOKEN": token}).returncode == 0
