"""Configuration: defaults, the TOML file, environment overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tickmesh.config import ConfigError, load_config, to_toml, update_channel
from tickmesh.sharding import shard_of


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env={})
    assert (config.channels.tick.batch_size, config.channels.tick.timeout_ms) == (1, 10.0)
    assert (config.channels.ohlcv.batch_size, config.channels.ohlcv.timeout_ms) == (100, 100.0)
    assert (config.channels.fmv.batch_size, config.channels.fmv.timeout_ms) == (50, 500.0)
    assert config.endpoints.ingest.startswith("tcp://127.0.0.1:")


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[channels.ohlcv]\nbatch_size = 7\n[endpoints]\ningest = "ipc:///tmp/x"\n')
    config = load_config(str(path), env={"TICKMESH_INGEST": "tcp://127.0.0.1:6000"})
    assert config.channels.ohlcv.batch_size == 7
    assert config.endpoints.ingest == "tcp://127.0.0.1:6000"
    assert load_config(None, env={"TICKMESH_CONFIG": str(path)}).channels.ohlcv.batch_size == 7


def test_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[channels.tick]\nbatchsize = 2\n")
    with pytest.raises(ConfigError, match=r"batchsize.*\$\.channels\.tick"):
        load_config(str(path), env={})
    path.write_text("[channels.fmv.rules]\nconfidence_min = 2\n")
    with pytest.raises(ConfigError, match=r"<= 1.*channels\.fmv\.rules\.confidence_min"):
        load_config(str(path), env={})
    path.write_text('[journal]\nrun = "a\\n"\n')  # a pattern's `$` alone lets a trailing newline through
    with pytest.raises(ConfigError, match=r"journal\.run"):
        load_config(str(path), env={})
    path.write_text('[web]\nlisten = "127.0.0.1:8090\\n"\n')
    with pytest.raises(ConfigError, match=r"web\.listen"):
        load_config(str(path), env={})
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "missing.toml"), env={})


def test_live_update_is_validated() -> None:
    config = load_config(None, env={})
    changed = update_channel(config, "ohlcv", {"big_move_pct": "5", "batch_size": 3, "rules.enabled": "false"})
    assert changed.channels.ohlcv.rules.big_move_pct == 5.0 and changed.channels.ohlcv.batch_size == 3
    assert changed.channels.ohlcv.rules.enabled is False
    with pytest.raises(ConfigError, match=r">= 1 - at `ohlcv.batch_size`"):
        update_channel(config, "ohlcv", {"batch_size": 0})
    with pytest.raises(ConfigError, match="unknown field"):
        update_channel(config, "ohlcv", {"nope": 1})
    with pytest.raises(KeyError):
        update_channel(config, "bonds", {"batch_size": 1})


def test_shard_hash_is_stable() -> None:
    # crc32, not Python's salted hash(): the same answer in every process, forever.
    # crc32 of AAPL, MSFT, NVDA, SPY: 3060094812, 3974476411, 2809157911, 968359423
    assert [shard_of(t, 4) for t in ("AAPL", "MSFT", "NVDA", "SPY")] == [0, 3, 3, 3]
    assert [shard_of(t, 7) for t in ("AAPL", "MSFT", "NVDA", "SPY")] == [
        3060094812 % 7,
        3974476411 % 7,
        2809157911 % 7,
        968359423 % 7,
    ]
    assert shard_of("AAPL", 1) == 0


def test_to_toml_writes_what_load_config_reads_back(tmp_path: Path) -> None:
    config = update_channel(load_config(env={}), "ohlcv", {"big_move_pct": 4.5, "paused": True})
    held = msgspec.structs.replace(config, process=msgspec.structs.replace(config.process, cpu_latency_us=0))
    path = tmp_path / "round.toml"
    for each in (config, held):  # an unset setting (cpu_latency_us None: TOML has no null) and a set one
        path.write_text(to_toml(msgspec.to_builtins(each)))
        assert load_config(str(path), env={}) == each
    assert to_toml({"a": {"s": 'say "hi"\\', "xs": [1, 2.5]}}) == '[a]\ns = "say \\"hi\\"\\\\"\nxs = [1, 2.5]\n'


STATE_PATHS = {
    "state": {"dir": "ckpt", "dead_letters": "/var/log/tickmesh/dl"},
    "control": {"token_file": "admin.token"},
    "security": {"keys_dir": "keys"},
}


def _state_paths(config) -> tuple[str, str, str, str]:  # type: ignore[no-untyped-def]
    return (config.state.dir, config.state.dead_letters, config.control.token_file, config.security.keys_dir)


def test_relative_state_paths_are_rooted_at_the_state_dir_absolute_ones_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(to_toml(STATE_PATHS))
    assert _state_paths(load_config(str(path), env={})) == ("ckpt", "/var/log/tickmesh/dl", "admin.token", "keys")
    rooted = load_config(str(path), env={}, state_dir="/srv/tm")
    assert _state_paths(rooted) == ("/srv/tm/ckpt", "/var/log/tickmesh/dl", "/srv/tm/admin.token", "/srv/tm/keys")
    defaults = load_config(None, env={"TICKMESH_STATE_DIR": "/srv/tm"})
    assert _state_paths(defaults) == (
        "/srv/tm/.tickmesh/state",
        "/srv/tm/.tickmesh/dead-letters",
        "/srv/tm/.tickmesh/admin.token",
        "/srv/tm/.tickmesh/keys",
    )
    keys = load_config(None, env={"TICKMESH_STATE_DIR": "/srv/tm", "TICKMESH_KEYS_DIR": "k"})
    assert keys.security.keys_dir == "/srv/tm/k"


@pytest.mark.parametrize(
    ("flag", "env", "root"),
    [
        ("/flag", {"TICKMESH_STATE_DIR": "/env", "STATE_DIRECTORY": "/systemd"}, "/flag"),
        (None, {"TICKMESH_STATE_DIR": "/env", "STATE_DIRECTORY": "/systemd"}, "/env"),
        (None, {"STATE_DIRECTORY": "/var/lib/tickmesh:/var/lib/other"}, "/var/lib/tickmesh"),
        (None, {"TICKMESH_STATE_DIR": "", "STATE_DIRECTORY": ""}, None),
    ],
)
def test_state_dir_precedence_flag_then_tickmesh_state_dir_then_systemd(
    flag: str | None, env: dict[str, str], root: str | None
) -> None:
    config = load_config(None, env=env, state_dir=flag)
    assert config.control.token_file == (f"{root}/.tickmesh/admin.token" if root else ".tickmesh/admin.token")


def test_restart_budget_is_configurable_and_validated(tmp_path: Path) -> None:
    assert (load_config(None, env={}).process.restart_budget, load_config(None, env={}).process.restart_window_s) == (
        5,
        60.0,
    )
    path = tmp_path / "t.toml"
    path.write_text("[process]\nrestart_budget = 2\nrestart_window_s = 10\n")
    assert load_config(str(path), env={}).process.restart_budget == 2
    path.write_text("[process]\nrestart_window_s = 0\n")
    with pytest.raises(ConfigError, match=r"process\.restart_window_s"):
        load_config(str(path), env={})
