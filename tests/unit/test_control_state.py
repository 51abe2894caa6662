"""Control's pure logic: status merging, metrics, acks, versions, conversions, tokens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest
from prometheus_client import generate_latest

from control import prometheus, state
from control.auth import TOKEN_ENV, TokenError, create_token_file, read_token, server_token, token_matches
from control.convert import snapshot_message
from control.state import BadStatus, FixedFieldError, MeshState
from control.store import ConfigStore
from control.tables import mixed_versions, to_dict
from tickmesh.bus import SOFTWARE, Status
from tickmesh.config import Config, ConfigError, update_channel
from tickmesh.schema import WIRE_VERSION

S = 1_000_000_000
T0 = 1_800_000_000 * S  # control's clock in these tests


def status(process: str, *, version: int = 0, counters=None, gauges=None, channels=None, pid=100, started=1):
    role = process.split(".")[0]
    return Status(
        process=process,
        role=role,
        channels=channels if channels is not None else ([process.split(".")[1]] if role == "worker" else []),
        host="h",
        pid=pid,
        config_version=version,
        started_ns=started,
        time_ns=T0,
        counters=counters or {},
        gauges=gauges or {},
    )


ROUTER = ["tick", "ohlcv", "fmv"]


@pytest.fixture
def mesh() -> MeshState:
    return MeshState(Config())  # status interval 1 s: live = reported within 3 s


def test_counters_are_summed_per_channel_and_unknown_names_pass_through(mesh: MeshState) -> None:
    mesh.apply_status(
        status("router", channels=ROUTER, counters={"tick.received": 10, "tick.rejected.nan_price": 2,
               "ingest.rejected.bad_frame": 1, "tick.brand_new": 4}),
        T0,
    )  # fmt: skip
    mesh.apply_status(status("worker.tick.0", counters={"tick.processed": 3, "tick.events.high": 1}), T0)
    mesh.apply_status(status("worker.tick.1", counters={"tick.processed": 5, "tick.events.high": 2}), T0)
    mesh.apply_status(status("aggregator", counters={"published": 3, "deduplicated.exact": 1}), T0)
    view = mesh.view(T0)
    tick = view.channels[0]
    assert tick.name == "tick"
    assert tick.counters == {"received": 10, "rejected.nan_price": 2, "brand_new": 4, "processed": 8, "events.high": 3}
    assert state.labelled(tick.counters, "events") == {"high": 3}
    assert view.counters == {"ingest.rejected.bad_frame": 1, "published": 3, "deduplicated.exact": 1}
    assert [p.process for p in view.processes] == ["aggregator", "router", "worker.tick.0", "worker.tick.1"]
    assert [c.name for c in mesh.view(T0, "fmv").channels] == ["fmv"]


def test_gauges_take_the_slowest_latency_and_sum_the_rest_from_live_processes_only(mesh: MeshState) -> None:
    g0 = {"ohlcv.processing_p99_us": 50.0, "ohlcv.queue_depth": 2.0, "process.rss_bytes": 1e6}
    g1 = {"ohlcv.processing_p99_us": 80.0, "ohlcv.queue_depth": 3.0, "process.rss_bytes": 2e6}
    mesh.apply_status(status("worker.ohlcv.0", gauges=g0, counters={"ohlcv.processed": 1}), T0 - 10 * S)
    mesh.apply_status(status("worker.ohlcv.1", gauges=g1), T0)
    mesh.apply_status(status("worker.ohlcv.2", gauges={"ohlcv.processing_p99_us": 60.0, "ohlcv.queue_depth": 1}), T0)
    view = mesh.view(T0)
    ohlcv = view.channels[1]
    assert ohlcv.gauges == {"processing_p99_us": 80.0, "queue_depth": 4.0}  # worker 0 is down: no gauges
    assert ohlcv.counter("processed") == 1  # ... but what it counted still counts
    assert [p.live for p in view.processes] == [False, True, True]
    assert "process.rss_bytes" not in view.gauges  # per-process only


def test_a_restarted_process_keeps_its_earlier_counts_in_the_sums(mesh: MeshState) -> None:
    mesh.apply_status(status("router", counters={"tick.received": 100}, pid=1, started=1), T0)
    mesh.apply_status(status("router", counters={"tick.received": 150}, pid=1, started=1), T0)
    mesh.apply_status(status("router", counters={"tick.received": 7}, pid=2, started=2), T0)
    assert mesh.view(T0).channels[0].counter("received") == 157
    assert mesh.view(T0).processes[0].counters == {"tick.received": 7}


def test_holders_are_live_processes_of_the_channel_and_acks_need_the_version(mesh: MeshState) -> None:
    for size in ("2", "3"):  # versions 1 and 2
        mesh.commit("ohlcv", mesh.propose("ohlcv", {"batch_size": size}))
    mesh.apply_status(status("router", channels=ROUTER, version=2), T0)
    mesh.apply_status(status("worker.ohlcv.0", version=1), T0)
    mesh.apply_status(status("worker.ohlcv.1", version=2), T0 - 3 * S - 1)  # silent for > 3 intervals
    mesh.apply_status(status("worker.tick.0", version=0), T0)
    mesh.apply_status(status("aggregator", version=0), T0)
    holders = mesh.holders("ohlcv", T0)
    assert holders == {"router", "worker.ohlcv.0"}
    assert mesh.acked(holders, 2) == {"router"}
    assert mesh.acked(holders, 1) == {"router", "worker.ohlcv.0"}
    assert mesh.acked({"never.seen"}, 0) == set()


def test_a_change_gets_the_next_version_and_a_no_op_gets_none(mesh: MeshState) -> None:
    new = mesh.propose("ohlcv", {"big_move_pct": "5.0"})
    assert mesh.config.channels.ohlcv.rules.big_move_pct == 2.0  # proposing changes nothing
    assert mesh.commit("ohlcv", new) is True
    assert (mesh.version, mesh.channel_versions) == (1, {"tick": 0, "ohlcv": 1, "fmv": 0})
    assert mesh.config.channels.ohlcv.rules.big_move_pct == 5.0
    assert mesh.commit("ohlcv", mesh.propose("ohlcv", {"rules.big_move_pct": "5"})) is False
    assert mesh.version == 1


def test_invalid_changes_name_the_field_and_unknown_channels_raise_key_error(mesh: MeshState) -> None:
    with pytest.raises(KeyError):
        mesh.propose("nope", {"batch_size": "1"})
    with pytest.raises(ConfigError, match=r"<= 1000.*big_move_pct"):
        mesh.propose("ohlcv", {"big_move_pct": "5000"})
    with pytest.raises(ConfigError, match="batch_size"):
        mesh.propose("fmv", {"batch_size": "0"})
    with pytest.raises(ConfigError, match="unknown field `colour`"):
        mesh.propose("fmv", {"colour": "red"})
    with pytest.raises(FixedFieldError, match="shards"):
        mesh.propose("tick", {"shards": "2"})
    assert mesh.version == 0


def test_a_status_report_is_a_measurement_never_a_source_of_configuration(mesh: MeshState) -> None:
    mesh.apply_status(status("router", version=2**62, channels=ROUTER), T0)  # forged, or from a lost store
    assert (mesh.version, mesh.config) == (0, Config())
    assert mesh.acked(["router"], 1) == set()  # a version control never issued acknowledges nothing
    mesh.commit("tick", mesh.propose("tick", {"batch_size": "4"}))
    assert mesh.version == 1 and mesh.acked(["router"], 1) == set()
    mesh.apply_status(status("router", version=1, channels=ROUTER), T0)
    assert mesh.acked(["router"], 1) == {"router"}


def test_a_restarted_control_continues_from_its_store(tmp_path: Path) -> None:
    first = MeshState(Config(), ConfigStore(str(tmp_path)))
    first.commit("ohlcv", first.propose("ohlcv", {"big_move_pct": "4.5"}))
    first.commit("tick", first.propose("tick", {"paused": "true"}))
    again = MeshState(Config(), ConfigStore(str(tmp_path)))
    assert (again.version, again.channel_versions) == (2, {"tick": 2, "ohlcv": 1, "fmv": 0})
    assert again.config.channels.ohlcv.rules.big_move_pct == 4.5 and again.config.channels.tick.paused
    again.commit("ohlcv", again.propose("ohlcv", {"batch_size": "40"}))  # built on the live config
    assert again.version == 3 and again.config.channels.ohlcv.rules.big_move_pct == 4.5


def test_an_edited_config_file_wins_over_the_store_as_a_new_version(tmp_path: Path) -> None:
    first = MeshState(Config(), ConfigStore(str(tmp_path)))
    first.commit("ohlcv", first.propose("ohlcv", {"big_move_pct": "4.5"}))
    edited = update_channel(Config(), "fmv", {"deviation_pct": "2.0"})  # the operator edited tickmesh.toml
    again = MeshState(edited, ConfigStore(str(tmp_path)))
    assert again.config == edited and again.version == 2
    assert again.channel_versions == {"tick": 0, "ohlcv": 2, "fmv": 2}
    assert MeshState(edited, ConfigStore(str(tmp_path))).version == 2  # and it is the stored one now


def test_an_unreadable_store_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "control-config.msgpack").write_bytes(b"\x81\xa4garbage")
    store = ConfigStore(str(tmp_path))
    state = MeshState(Config(), store)
    assert (state.version, state.config, store.moved_aside) == (0, Config(), 1)
    assert len(list(tmp_path.glob("control-config.msgpack.unreadable-*"))) == 1


def test_bad_status_reports_are_refused_and_the_process_table_is_bounded(
    mesh: MeshState, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BadStatus, match="config_version"):
        mesh.apply_status(status("router", version=2**64 - 1), T0)
    with pytest.raises(BadStatus, match="process name"):
        mesh.apply_status(status(""), T0)
    with pytest.raises(BadStatus, match="metrics in one report"):
        mesh.apply_status(status("router", counters={str(i): i for i in range(state.MAX_METRICS + 1)}), T0)
    monkeypatch.setattr(state, "MAX_PROCESSES", 2)
    mesh.apply_status(status("worker.tick.0", counters={"tick.processed": 4}), T0 - 10 * S)  # down by T0
    mesh.apply_status(status("worker.tick.1"), T0)
    mesh.apply_status(status("worker.tick.2"), T0)  # evicts the dead one, keeping its counts
    with pytest.raises(BadStatus, match="more than 2 processes"):
        mesh.apply_status(status("worker.tick.3"), T0)
    view = mesh.view(T0)
    assert [p.process for p in view.processes] == ["worker.tick.1", "worker.tick.2"]
    assert view.channels[0].counter("processed") == 4


def test_snapshot_message_fills_the_typed_fields(mesh: MeshState) -> None:
    counters = {"fmv.received": 9, "fmv.rejected.nan_price": 2, "fmv.rejected.bad_ticker": 1,
                "fmv.events.fmv_deviation": 4, "fmv.paused_dropped": 3, "deduplicated.exact": 5,
                "ingest.rejected.bad_frame": 6, "published": 4}  # fmt: skip
    gauges = {"fmv.latency_p99.9_us": 900.0, "fmv.processing_mean_us": 12.0, "subscribers": 2.0,
              "process.rss_bytes": 5e6}  # fmt: skip
    mesh.apply_status(status("router", channels=ROUTER, counters=counters, gauges=gauges), T0)
    msg = snapshot_message(mesh.view(T0))
    fmv = msg.channels[2]
    assert (fmv.channel, fmv.received, fmv.rejected_total, fmv.paused_dropped) == ("fmv", 9, 3, 3)
    assert dict(fmv.rejected) == {"nan_price": 2, "bad_ticker": 1}
    assert (fmv.events_total, fmv.latency_p999_us, fmv.processing_mean_us) == (4, 900.0, 12.0)
    assert dict(fmv.counters)["received"] == 9
    assert (msg.aggregator.published, msg.aggregator.deduplicated_total, msg.aggregator.subscribers) == (4, 5, 2)
    assert dict(msg.ingest_rejected) == {"bad_frame": 6}
    assert msg.processes[0].rss_bytes == 5e6
    as_dict = to_dict(msg)
    assert as_dict["channels"][2]["received"] == 9  # a number, not the proto JSON mapping's "9"
    assert as_dict["channels"][2]["rejected"] == {"bad_ticker": 1, "nan_price": 2}


def test_prometheus_exposition_has_typed_and_generic_families(mesh: MeshState) -> None:
    counters = {"tick.received": 10, "tick.rejected.nan_price": 2, "tick.brand_new": 1, "published": 3}
    gauges = {"tick.latency_p99.9_us": 700.0, "tick.queue_depth": 5.0, "process.cpu_percent": 12.5}
    mesh.apply_status(status("router", channels=ROUTER, counters=counters, gauges=gauges), T0)
    text = generate_latest(prometheus.registry(lambda: mesh.view(T0))).decode()
    for line in (
        'tickmesh_channel_received_total{channel="tick"} 10.0',
        'tickmesh_channel_rejected_total{channel="tick",reason="nan_price"} 2.0',
        'tickmesh_channel_other_total{channel="tick",name="brand_new"} 1.0',
        'tickmesh_channel_latency_microseconds{channel="tick",stage="latency",stat="p99.9"} 700.0',
        'tickmesh_channel_queue_depth{channel="tick"} 5.0',
        "tickmesh_published_total 3.0",
        'tickmesh_process_cpu_percent{host="h",process="router",role="router"} 12.5',
        'tickmesh_process_up{host="h",process="router",role="router"} 1.0',
    ):
        assert line in text


# -- tokens --------------------------------------------------------------------
def test_token_matches_only_the_exact_bearer_token() -> None:
    assert token_matches([("authorization", "Bearer s3cret")], "s3cret")
    assert token_matches((("Authorization", b"bearer s3cret"),), "s3cret")
    assert not token_matches([("authorization", "Bearer s3cre")], "s3cret")
    assert not token_matches([("authorization", "Basic s3cret")], "s3cret")
    assert not token_matches([("x-token", "s3cret")], "s3cret")
    assert not token_matches(None, "s3cret")


def test_the_environment_wins_over_the_token_file(tmp_path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("from-file\n")
    path.chmod(0o600)
    assert read_token({TOKEN_ENV: "from-env"}, path) == ("from-env", TOKEN_ENV)
    assert read_token({}, path) == ("from-file", str(path.resolve()))
    assert read_token({}, tmp_path / "missing") is None
    (tmp_path / "empty").write_text("  \n")
    (tmp_path / "empty").chmod(0o600)
    with pytest.raises(TokenError, match="empty"):
        read_token({}, tmp_path / "empty")


@pytest.mark.parametrize("bits", [0o600, 0o400, 0o640, 0o440])
def test_a_token_file_readable_by_its_owner_or_group_is_accepted(tmp_path, bits: int) -> None:
    path = tmp_path / "admin.token"
    path.write_text("s3cret\n")
    path.chmod(bits)
    assert read_token({}, path) == ("s3cret", str(path.resolve()))


@pytest.mark.parametrize("bits", [0o644, 0o604, 0o660, 0o444])
def test_a_world_readable_or_group_writable_token_file_is_refused_with_the_fix(tmp_path, bits: int) -> None:
    path = tmp_path / "admin.token"
    path.write_text("s3cret\n")
    path.chmod(bits)
    with pytest.raises(TokenError, match=rf"{path}: admin token file .*mode {bits:04o}.*chmod 600 {path}"):
        read_token({}, path)
    assert read_token({TOKEN_ENV: "from-env"}, path) == ("from-env", TOKEN_ENV)  # the file is not read then


def test_control_creates_a_private_token_file_once(tmp_path) -> None:
    path = tmp_path / "sub" / "admin.token"
    token, where, created = server_token({}, path)
    assert created and where == str(path) and len(token) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert server_token({}, path) == (token, where, False)


def test_the_token_file_appears_with_its_token_in_it_never_empty(tmp_path, monkeypatch) -> None:
    """tickmesh-web reads the file at start, while control may be creating it: an empty file stopped it (exit 4)."""
    path = tmp_path / "admin.token"
    seen_while_writing: list[bool] = []
    fdopen = os.fdopen

    def watched(fd: int, mode: str = "r") -> object:  # the token is written through this file
        seen_while_writing.append(path.exists())
        return fdopen(fd, mode)

    monkeypatch.setattr(os, "fdopen", watched)
    token, _, created = server_token({}, path)
    assert created and seen_while_writing == [False]  # the name is not there until the token is
    assert read_token({}, path) == (token, str(path)) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.token"]  # no draft left beside it
    with pytest.raises(TokenError, match="cannot create token file .*File exists"):
        create_token_file(path)  # never over a token another process just wrote
    assert read_token({}, path) == (token, str(path))


def test_every_process_reports_its_versions_and_a_mixed_mesh_is_pointed_out(mesh: MeshState) -> None:
    same = {"software": SOFTWARE, "wire": WIRE_VERSION}
    mesh.apply_status(msgspec.structs.replace(status("router", channels=ROUTER), **same), T0)
    mesh.apply_status(msgspec.structs.replace(status("aggregator"), **same), T0)
    assert mixed_versions(snapshot_message(mesh.view(T0))) == ""
    mesh.apply_status(msgspec.structs.replace(status("worker.tick.0"), software="0.0.9", wire=1), T0)
    mixed = mixed_versions(snapshot_message(mesh.view(T0)))
    assert "0.0.9 (wire 1): worker.tick.0" in mixed
    assert f"{SOFTWARE} (wire {WIRE_VERSION}): aggregator, router" in mixed
