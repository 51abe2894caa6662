"""Pieces of supervision: the worker supervisor's restart budget, tickmesh-shard's instance names."""

from __future__ import annotations

import pytest

from workers import standalone
from workers.budget import RestartBudget
from workers.standalone import split_instance


def test_the_budget_allows_n_restarts_per_window_then_refuses() -> None:
    budget = RestartBudget(3, 60.0)
    assert [budget.spend(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert not budget.spend(3.0)
    assert not budget.spend(59.9)  # the first restart is still inside the window
    assert budget.spend(60.0)  # ... and now it is not
    assert not budget.spend(60.5)


def test_a_zero_budget_never_restarts() -> None:
    assert not RestartBudget(0, 60.0).spend(0.0)


def test_restarts_spread_wider_than_the_window_go_on_forever() -> None:
    budget = RestartBudget(2, 10.0)
    assert all(budget.spend(t * 6.0) for t in range(100))


def test_a_systemd_instance_name_is_a_channel_and_a_shard() -> None:
    assert split_instance(["tick-0"]) == ["tick", "0"]
    assert split_instance(["ohlcv:12", "--config", "x.toml"]) == ["ohlcv", "12", "--config", "x.toml"]
    assert split_instance(["--log-level", "DEBUG", "fmv-1"]) == ["--log-level", "DEBUG", "fmv", "1"]
    assert split_instance(["fmv", "1"]) == ["fmv", "1"]
    assert split_instance(["--log-level=DEBUG", "fmv-1"]) == ["--log-level=DEBUG", "fmv", "1"]
    assert split_instance(["tick-x"]) == ["tick-x"]  # the shard's own parser names the error


def test_tickmesh_shard_help_names_itself_and_its_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        standalone.main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert out.startswith("tickmesh-shard CHANNEL N") and "Exit codes" in out and "{tick,ohlcv,fmv}" in out
