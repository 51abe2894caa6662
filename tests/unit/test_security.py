"""CURVE policy and key files: 0600 from creation, refusal of open secrets, the auto decision, lookups."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest
import zmq.auth

from tickmesh import keys
from tickmesh.config import Config, ConfigError, SecurityConfig, load_config
from tickmesh.endpoints import Endpoints
from tickmesh.security import (
    KeyFileError,
    authorized_dir,
    curve_enabled,
    public_key_path,
    read_authorized,
    read_public_key,
    read_secret_key,
    secret_key_path,
    server_roles,
    tcp_host,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def no_umask():
    """umask 0: a file that is 0600 was created 0600, not narrowed by the umask."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_keys_are_created_0600_without_a_chmod(tmp_path: Path, no_umask: None, monkeypatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("keys must be created with their mode, not chmod-ed")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)
    monkeypatch.setattr(Path, "chmod", refuse)
    assert keys.main(["create", "--dir", str(tmp_path / "k")]) == 0
    folder = tmp_path / "k"
    assert mode(folder) == 0o700 and mode(authorized_dir(folder)) == 0o700
    for role in ("router", "worker", "aggregator", "control", "feed", "subscriber", "journal"):
        assert mode(secret_key_path(folder, role)) == 0o600
        assert mode(public_key_path(folder, role)) == 0o644
        public, secret = read_secret_key(secret_key_path(folder, role))
        assert read_public_key(public_key_path(folder, role)) == public
        assert zmq.auth.load_certificate(secret_key_path(folder, role)) == (public, secret)  # czmq/pyzmq format
        assert zmq.curve_public(secret) == public
    assert len(read_authorized(authorized_dir(folder))) == 7
    assert not list(folder.glob(".*.new"))  # no temporary files left behind


def test_create_keeps_existing_keys_unless_forced(tmp_path: Path, capsys) -> None:
    assert keys.main(["create", "--dir", str(tmp_path), "worker"]) == 0
    before = secret_key_path(tmp_path, "worker").read_bytes()
    assert keys.main(["create", "--dir", str(tmp_path), "worker"]) == 0
    assert "kept" in capsys.readouterr().out
    assert secret_key_path(tmp_path, "worker").read_bytes() == before
    assert keys.main(["create", "--dir", str(tmp_path), "--force", "worker"]) == 0
    assert secret_key_path(tmp_path, "worker").read_bytes() != before
    assert mode(secret_key_path(tmp_path, "worker")) == 0o600
    assert keys.main(["create", "--dir", str(tmp_path), "wizard"]) == 2


@pytest.mark.parametrize("bits", [0o644, 0o604, 0o620, 0o660, 0o444, 0o606, 0o601])
def test_a_world_accessible_or_group_writable_secret_key_is_refused_with_the_fix(tmp_path: Path, bits: int) -> None:
    keys.create(tmp_path, ["router"])
    path = secret_key_path(tmp_path, "router")
    path.chmod(bits)
    with pytest.raises(KeyFileError, match=rf"{path}.*mode {bits:04o}.*chmod 600 {path}.*defaultMode: 0400"):
        read_secret_key(path)
    assert keys.main(["check", "--dir", str(tmp_path), "router"]) == 1


@pytest.mark.parametrize("bits", [0o600, 0o400, 0o640, 0o440])
def test_a_secret_key_readable_by_its_owner_or_group_is_accepted(tmp_path: Path, bits: int) -> None:
    keys.create(tmp_path, ["router", "aggregator", "control"])
    path = secret_key_path(tmp_path, "router")
    path.chmod(bits)
    public, _ = read_secret_key(path)
    assert public == read_public_key(public_key_path(tmp_path, "router"))
    assert keys.main(["check", "--dir", str(tmp_path), "router"]) == 0


def test_missing_and_malformed_key_files_are_named(tmp_path: Path) -> None:
    fix = rf"add it with `tickmesh-keys create --dir {tmp_path} router`, which keeps the keys that exist"
    with pytest.raises(KeyFileError, match=rf"{tmp_path}/router.key_secret: secret key file missing \({fix}"):
        read_secret_key(secret_key_path(tmp_path, "router"))
    with pytest.raises(KeyFileError, match=rf"{tmp_path}/authorized: no authorized keys folder"):
        read_authorized(authorized_dir(tmp_path))
    bad = tmp_path / "x.key"
    bad.write_text('curve\n    public-key = "too short"\n')
    with pytest.raises(KeyFileError, match=rf"{bad}: no valid public-key"):
        read_public_key(bad)
    public_only = tmp_path / "p.key_secret"
    keys.create(tmp_path, ["feed"])
    public_only.write_bytes(public_key_path(tmp_path, "feed").read_bytes())
    public_only.chmod(0o600)
    with pytest.raises(KeyFileError, match="no secret-key"):
        read_secret_key(public_only)


def test_check_wants_what_a_host_needs(tmp_path: Path) -> None:
    keys.create(tmp_path, ["router", "aggregator", "control", "worker"])
    assert keys.check(tmp_path, ["worker"]) == []
    public_key_path(tmp_path, "aggregator").unlink()
    assert keys.check(tmp_path, ["worker"]) == [
        f"{tmp_path}/aggregator.key: public key file missing (create keys with `tickmesh-keys create`)"
    ]


def endpoints(**changes: str) -> Endpoints:
    return msgspec.structs.replace(Endpoints(), **changes)


@pytest.mark.parametrize(
    ("curve", "changes", "expected"),
    [
        ("auto", {}, False),  # the loopback defaults
        ("auto", {"ingest": "ipc:///tmp/tm/ingest"}, False),
        ("auto", {"ingest": "tcp://localhost:5550", "events": "tcp://[::1]:5590"}, False),
        ("auto", {"acks": "tcp://127.0.0.2:5552"}, False),
        ("auto", {"tick": "tcp://10.77.0.1:5600"}, True),
        ("auto", {"ingest": "tcp://*:5550"}, True),
        ("auto", {"ingest": "tcp://0.0.0.0:5550"}, True),
        ("auto", {"publish": "tcp://eth0:5591"}, True),
        ("auto", {"control_status": "tcp://mesh-a.internal:5596"}, True),
        ("auto", {"grpc": "0.0.0.0:50051", "prometheus": "0.0.0.0:9108"}, False),  # not zmq: TLS is control's
        ("off", {"tick": "tcp://10.77.0.1:5600"}, False),  # the explicit opt-out
        ("on", {}, True),
    ],
)
def test_auto_turns_curve_on_for_a_non_loopback_endpoint(curve: str, changes: dict[str, str], expected: bool) -> None:
    assert curve_enabled(SecurityConfig(curve=curve), endpoints(**changes)) is expected  # type: ignore[arg-type]


def test_tcp_host() -> None:
    assert tcp_host("tcp://10.0.0.1:5550") == "10.0.0.1"
    assert tcp_host("tcp://[fe80::1]:5550") == "fe80::1"
    assert tcp_host("tcp://10.0.0.2:0;10.0.0.1:5550") == "10.0.0.1"
    assert tcp_host("ipc:///tmp/x") is None


def test_each_endpoint_names_the_role_that_binds_it() -> None:
    config = Config(endpoints=endpoints(tick="tcp://10.77.0.1:5600", publish="tcp://10.77.0.1:5591"))
    roles = server_roles(config)
    assert roles["tcp://10.77.0.1:5600"] == roles["tcp://10.77.0.1:5603"] == "router"
    assert roles[config.endpoints.shard("fmv", 2)] == "router"
    assert roles["tcp://10.77.0.1:5591"] == roles[config.endpoints.events] == "aggregator"
    assert roles[config.endpoints.control_status] == roles[config.endpoints.control_config] == "control"
    assert roles[config.endpoints.ingest] == roles[config.endpoints.acks] == roles[config.endpoints.sync] == "router"


def test_security_config_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "t.toml"
    path.write_text('[security]\ncurve = "off"\nkeys_dir = "/etc/tickmesh/keys"\n')
    assert load_config(str(path), env={}).security == SecurityConfig(curve="off", keys_dir="/etc/tickmesh/keys")
    config = load_config(str(path), env={"TICKMESH_KEYS_DIR": "/run/keys"})
    assert (config.security.curve, config.security.keys_dir) == ("off", "/run/keys")
    assert load_config(None, env={"TICKMESH_KEYS_DIR": "/run/keys"}).security.keys_dir == "/run/keys"
    path.write_text('[security]\ncurve = "yes"\n')
    with pytest.raises(ConfigError, match=r"security\.curve"):
        load_config(str(path), env={})


def test_state_folders_are_created_0700_whoever_makes_them_first(tmp_path: Path, no_umask: None) -> None:
    from control.auth import create_token_file
    from tickmesh.deadletters import DeadLetters
    from tickmesh.security import private_dirs

    private_dirs(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    DeadLetters(str(tmp_path / "run" / ".tickmesh" / "dead-letters"), "router", 1_000)  # the router is first
    create_token_file(tmp_path / "run" / ".tickmesh" / "admin.token")  # then control
    assert mode(tmp_path / "run" / ".tickmesh") == 0o700 and mode(tmp_path / "run" / ".tickmesh/dead-letters") == 0o700
    assert mode(tmp_path / "run" / ".tickmesh" / "admin.token") == 0o600
