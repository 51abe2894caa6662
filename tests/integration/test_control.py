"""The real tickmesh-control process over real gRPC and ZeroMQ, with stand-in mesh processes on the bus."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import zmq
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc
from tests.integration.control_helpers import TOKEN, Control, FakeProcess, running_control
from tests.mesh import poll_until
from web.mesh import MeshView

ALL = ["tick", "ohlcv", "fmv"]


@pytest.fixture
def control() -> Iterator[Control]:
    with running_control(ack_timeout_s=2.0) as c:
        yield c


@pytest.fixture(scope="module")
def unchanged() -> Iterator[Control]:
    """One control process shared by the tests that change nothing (each checks it stays at version 0)."""
    with running_control() as c:
        yield c


def update(c: Control, channel: str, **changes: object) -> pb.UpdateChannelResponse:
    req = pb.UpdateChannelRequest(channel=channel, changes={k: str(v) for k, v in changes.items()})
    return c.stub.UpdateChannel(req, metadata=c.md, timeout=10)


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def test_a_change_is_applied_and_acked_by_every_live_holder(control: Control) -> None:
    with (
        FakeProcess(control, "router", ALL) as router,
        FakeProcess(control, "worker.ohlcv.0", ["ohlcv"]) as worker,
        FakeProcess(control, "worker.tick.0", ["tick"]),
        FakeProcess(control, "aggregator", []),
    ):
        poll_until(lambda: control.live("router", "worker.ohlcv.0", "worker.tick.0", "aggregator"), what="live")
        reply = update(control, "ohlcv", big_move_pct=5.0, batch_size=7)
        assert (reply.config_version, reply.changed, list(reply.acked)) == (1, True, ["router", "worker.ohlcv.0"])
        assert reply.channel.rules["big_move_pct"] == "5.0" and reply.channel.batch_size == 7
        # acked means applied: the holders already run the new config
        for fake in (router, worker):
            assert fake.applied[-1][0] == 1
            assert fake.current.channels.ohlcv.rules.big_move_pct == 5.0
            assert fake.current.channels.ohlcv.batch_size == 7
        listed = control.stub.ListChannels(pb.ListChannelsRequest(), metadata=control.md, timeout=5)
        ohlcv = {c.name: c for c in listed.channels}["ohlcv"]
        assert (listed.config_version, ohlcv.config_version, ohlcv.rules["big_move_pct"]) == (1, 1, "5.0")
        assert {c.name: c.config_version for c in listed.channels}["tick"] == 0


def test_a_holder_that_does_not_ack_fails_the_call_by_name(control: Control) -> None:
    with (
        FakeProcess(control, "router", ALL),
        FakeProcess(control, "worker.fmv.0", ["fmv"], applies=False),
    ):
        poll_until(lambda: control.live("router", "worker.fmv.0"), what="live")
        err = rpc_error(update, control, "fmv", batch_size=10)
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "worker.fmv.0" in err.details() and "acknowledged by: router" in err.details()
        # the version stays published: the change is not rolled back
        listed = control.stub.ListChannels(pb.ListChannelsRequest(), metadata=control.md, timeout=5)
        assert listed.config_version == 1 and listed.channels[2].batch_size == 10


def test_pause_and_resume_make_versions_and_a_repeat_changes_nothing(control: Control) -> None:
    with FakeProcess(control, "router", ALL) as router, FakeProcess(control, "worker.tick.0", ["tick"]) as worker:
        poll_until(lambda: control.live("router", "worker.tick.0"), what="live")
        req = pb.ChannelRequest(channel="tick")
        paused = control.stub.PauseChannel(req, metadata=control.md, timeout=10)
        assert (paused.config_version, paused.channel.paused, list(paused.acked)) == (
            1,
            True,
            ["router", "worker.tick.0"],
        )
        assert worker.current.channels.tick.paused and router.current.channels.tick.paused
        again = control.stub.PauseChannel(req, metadata=control.md, timeout=10)
        assert (again.config_version, again.changed) == (1, False)
        resumed = control.stub.ResumeChannel(req, metadata=control.md, timeout=10)
        assert (resumed.config_version, resumed.channel.paused) == (2, False)
        assert not worker.current.channels.tick.paused


@pytest.mark.parametrize(
    ("channel", "changes", "code", "words"),
    [
        ("ohlcv", {"big_move_pct": "5000"}, grpc.StatusCode.INVALID_ARGUMENT, ["big_move_pct", "1000"]),
        ("fmv", {"batch_size": "abc"}, grpc.StatusCode.INVALID_ARGUMENT, ["batch_size", "int"]),
        ("tick", {"timeout_ms": "-1"}, grpc.StatusCode.INVALID_ARGUMENT, ["timeout_ms", ">= 0"]),
        ("tick", {"colour": "red"}, grpc.StatusCode.INVALID_ARGUMENT, ["colour"]),
        ("tick", {"shards": "4"}, grpc.StatusCode.INVALID_ARGUMENT, ["shards"]),
        ("tick", {}, grpc.StatusCode.INVALID_ARGUMENT, ["no changes"]),
        ("forex", {"batch_size": "1"}, grpc.StatusCode.NOT_FOUND, ["forex"]),
    ],
)
def test_invalid_changes_are_rejected_with_the_right_status(
    unchanged: Control, channel: str, changes: dict[str, str], code: grpc.StatusCode, words: list[str]
) -> None:
    err = rpc_error(unchanged.stub.UpdateChannel, pb.UpdateChannelRequest(channel=channel, changes=changes),
                    metadata=unchanged.md, timeout=5)  # fmt: skip
    assert err.code() == code
    for word in words:
        assert word in err.details()
    assert unchanged.stub.ListChannels(pb.ListChannelsRequest(), metadata=unchanged.md).config_version == 0


def test_unknown_channels_are_not_found_everywhere(unchanged: Control) -> None:
    md = unchanged.md
    for call, req in [
        (unchanged.stub.PauseChannel, pb.ChannelRequest(channel="forex")),
        (unchanged.stub.GetMetrics, pb.GetMetricsRequest(channel="forex")),
    ]:
        assert rpc_error(call, req, metadata=md, timeout=5).code() == grpc.StatusCode.NOT_FOUND
    stream = unchanged.stub.WatchMetrics(pb.WatchMetricsRequest(channel="forex"), metadata=md, timeout=5)
    assert rpc_error(next, stream).code() == grpc.StatusCode.NOT_FOUND
    stream = unchanged.stub.WatchMetrics(pb.WatchMetricsRequest(interval_s=0.01), metadata=md, timeout=5)
    assert rpc_error(next, stream).code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("metadata", [None, [("authorization", "Bearer wrong")], [("authorization", TOKEN)]])
def test_every_rpc_but_health_needs_the_token(unchanged: Control, metadata) -> None:  # type: ignore[no-untyped-def]
    stub = unchanged.stub
    unary = [(stub.ListChannels, pb.ListChannelsRequest()), (stub.GetMetrics, pb.GetMetricsRequest()),
             (stub.PauseChannel, pb.ChannelRequest(channel="tick"))]  # fmt: skip
    for call, req in unary:
        assert rpc_error(call, req, metadata=metadata, timeout=5).code() == grpc.StatusCode.UNAUTHENTICATED
    stream = stub.WatchMetrics(pb.WatchMetricsRequest(), metadata=metadata, timeout=5)
    assert rpc_error(next, stream).code() == grpc.StatusCode.UNAUTHENTICATED
    reflect = reflection_pb2_grpc.ServerReflectionStub(unchanged.channel)
    replies = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                           metadata=metadata, timeout=5)  # fmt: skip
    assert rpc_error(next, replies).code() == grpc.StatusCode.UNAUTHENTICATED
    health = health_pb2_grpc.HealthStub(unchanged.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert unchanged.stub.ListChannels(pb.ListChannelsRequest(), metadata=unchanged.md).config_version == 0


def test_health_and_reflection_work_for_generic_tools(unchanged: Control) -> None:
    health = health_pb2_grpc.HealthStub(unchanged.channel)
    for service in ("", "tickmesh.control.v1.Control"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(unchanged.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="tickmesh.control.v1.Control"),
    ]
    listed, described = list(reflect.ServerReflectionInfo(iter(requests), metadata=unchanged.md, timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {"tickmesh.control.v1.Control", "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto  # the .proto, for grpcurl describe


def test_metrics_sum_what_the_processes_report_in_grpc_and_prometheus(control: Control) -> None:
    router = {
        "tick.received": 100,
        "tick.routed": 90,
        "tick.rejected.nan_price": 4,
        "tick.batches": 9,
        "tick.paused_dropped": 6,
        "ingest.rejected.bad_frame": 2,
        "fmv.conflated": 5,
        "tick.new_thing": 1,
    }
    w0 = {"tick.processed": 50, "tick.events.high": 3}
    w1 = {"tick.processed": 40, "tick.events.high": 2, "tick.events.low": 1}
    agg = {"published": 6, "received": 6, "deduplicated.exact": 1}
    gauges = {"tick.latency_p99_us": 250.0, "subscribers": 2.0}
    with (
        FakeProcess(control, "router", ALL, counters=router, gauges={"tick.queue_depth": 3.0}),
        FakeProcess(control, "worker.tick.0", ["tick"], counters=w0, gauges={"tick.processing_p99_us": 30.0}),
        FakeProcess(control, "worker.tick.1", ["tick"], counters=w1, gauges={"tick.processing_p99_us": 45.0}),
        FakeProcess(control, "aggregator", [], counters=agg, gauges=gauges),
    ):
        names = ("router", "worker.tick.0", "worker.tick.1", "aggregator")
        poll_until(lambda: control.live(*names), what="live")
        snap = control.metrics()
        tick = snap.channels[0]
        assert (tick.received, tick.routed, tick.processed, tick.batches) == (100, 90, 90, 9)
        assert (tick.rejected_total, dict(tick.rejected), tick.paused_dropped) == (4, {"nan_price": 4}, 6)
        assert (tick.events_total, dict(tick.events)) == (6, {"high": 5, "low": 1})
        assert (tick.queue_depth, tick.processing_p99_us, tick.latency_p99_us) == (3.0, 45.0, 250.0)
        assert tick.counters["new_thing"] == 1 and snap.channels[2].conflated == 5
        assert (snap.aggregator.published, dict(snap.aggregator.deduplicated), snap.aggregator.subscribers) == (
            6, {"exact": 1}, 2.0)  # fmt: skip
        assert dict(snap.ingest_rejected) == {"bad_frame": 2}
        procs = {p.process: p for p in snap.processes}
        assert set(procs) == {*names, "control"}
        assert procs["worker.tick.1"].role == "worker" and procs["worker.tick.1"].rss_bytes > 0
        assert procs["control"].live and procs["control"].pid == control.proc.pid

        only = control.metrics("tick")
        assert [c.channel for c in only.channels] == ["tick"]
        watch = control.stub.WatchMetrics(pb.WatchMetricsRequest(interval_s=0.1), metadata=control.md, timeout=10)
        first, second = next(watch), next(watch)
        watch.cancel()
        assert second.time_ns > first.time_ns and second.channels[0].received == 100

        text = urllib.request.urlopen(f"http://{control.prometheus}/metrics", timeout=5).read().decode()
        for line in (
            'tickmesh_channel_received_total{channel="tick"} 100.0',
            'tickmesh_channel_processed_total{channel="tick"} 90.0',
            'tickmesh_channel_events_total{channel="tick",kind="high"} 5.0',
            'tickmesh_ingest_rejected_total{reason="bad_frame"} 2.0',
            "tickmesh_published_total 6.0",
            "tickmesh_subscribers 2.0",
        ):
            assert line in text


def test_a_process_reporting_a_version_control_never_issued_is_brought_back_to_control(control: Control) -> None:
    with FakeProcess(control, "worker.ohlcv.0", ["ohlcv"], version=7) as stray:  # a lost store, or forged
        poll_until(lambda: stray.applied and stray.applied[-1][0] == 0, what="the process back on version 0")
        assert control.metrics().config_version == 0
        reply = update(control, "ohlcv", big_move_pct=3)
        assert (reply.config_version, list(reply.acked)) == (1, ["worker.ohlcv.0"])


def test_a_process_that_starts_late_converges_on_the_live_config(control: Control) -> None:
    reply = update(control, "fmv", deviation_pct=2.5)  # nobody holds fmv yet: nothing to wait for
    assert (reply.config_version, list(reply.acked)) == (1, [])
    with FakeProcess(control, "worker.fmv.0", ["fmv"]) as late:
        poll_until(lambda: late.applied, timeout=5, what="the re-published config")
        assert late.applied[-1][0] == 1 and late.current.channels.fmv.rules.deviation_pct == 2.5


def test_bad_status_reports_are_counted_and_do_not_stop_control(control: Control) -> None:
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(control.config.endpoints.control_status)
    for junk in (b"", b"\xc1garbage", b"\x91" * 100_000, b"\x81\xa4type\xa6status"):
        push.send(junk)
    push.send_multipart([b"two", b"frames"])
    push.close()
    ctx.term()

    def invalid() -> int:
        counters = {p.process: p.counters for p in control.metrics().processes}["control"]
        return counters.get("control.status_invalid", 0)

    poll_until(lambda: invalid() == 5, what="5 invalid reports counted")
    assert control.stub.ListChannels(pb.ListChannelsRequest(), metadata=control.md).config_version == 0


def test_sigterm_stops_control_cleanly_even_with_a_watch_open(control: Control) -> None:
    watch = control.stub.WatchMetrics(pb.WatchMetricsRequest(interval_s=60), metadata=control.md)
    next(watch)
    started = time.monotonic()
    control.proc.terminate()
    assert control.proc.wait(5) == 0
    assert time.monotonic() - started < 5
    assert "stopping" in control.log.read_text()


def test_without_a_token_control_creates_a_private_token_file() -> None:
    with running_control(token=None, token_file=None) as c:
        path = c.dir / ".tickmesh" / "admin.token"
        assert path.stat().st_mode & 0o777 == 0o600
        assert str(path) in c.log.read_text()
        c.token = path.read_text().strip()
        assert c.stub.ListChannels(pb.ListChannelsRequest(), metadata=c.md, timeout=5).config_version == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_when_a_cert_and_key_are_configured(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    extra = f'tls_cert = "{cert}"\ntls_key = "{key}"'
    with running_control(extra=extra) as c:
        assert "(TLS)" in c.log.read_text()
        plain = rpc_error(c.stub.ListChannels, pb.ListChannelsRequest(), metadata=c.md, timeout=5)
        assert plain.code() == grpc.StatusCode.UNAVAILABLE
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(c.target, creds) as channel:
            reply = pb_grpc.ControlStub(channel).ListChannels(pb.ListChannelsRequest(), metadata=c.md, timeout=5)
            assert reply.config_version == 0
        # tickmesh-web's view of the mesh trusts the same certificate (control.tls_cert), as tickmesh-admin does
        trusting, plain_view = asyncio.run(web_snapshots(c.target, cert.read_bytes()))
        assert "error" not in trusting and [ch["channel"] for ch in trusting["channels"]] == ["tick", "ohlcv", "fmv"]
        assert "unavailable" in plain_view["error"].lower(), plain_view


async def web_snapshots(target: str, ca: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """One snapshot from a web MeshView trusting `ca`, one from a plaintext one."""
    out = []
    for view in (MeshView(target, lambda: TOKEN, 1.0, 60.0, ca), MeshView(target, lambda: TOKEN, 1.0, 60.0)):
        view.open()
        out.append(await view.snapshot())
        await view.close()
    return out[0], out[1]


def test_mesh_health_follows_the_router_and_the_aggregator(control: Control) -> None:
    health = health_pb2_grpc.HealthStub(control.channel)
    answer = health_pb2.HealthCheckResponse

    def mesh_status() -> int:
        return health.Check(health_pb2.HealthCheckRequest(service="tickmesh.mesh"), timeout=5).status

    poll_until(lambda: mesh_status() == answer.NOT_SERVING, 10, what="NOT_SERVING before the data path reports")
    with FakeProcess(control, "router", ["tick", "ohlcv", "fmv"]), FakeProcess(control, "aggregator", []):
        poll_until(lambda: mesh_status() == answer.SERVING, 10, what="SERVING once router and aggregator report")
    # the router and the aggregator fell silent (stopped reporting): within the liveness window, NOT_SERVING
    poll_until(lambda: mesh_status() == answer.NOT_SERVING, 15, what="NOT_SERVING once they fall silent")
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == answer.SERVING  # control itself


def test_with_two_routers_mesh_health_needs_both_and_metrics_sum_them() -> None:
    with running_control(extra="[router]\ncount = 2") as control:
        health = health_pb2_grpc.HealthStub(control.channel)
        request = health_pb2.HealthCheckRequest(service="tickmesh.mesh")
        answer = health_pb2.HealthCheckResponse
        received = {"tick.received": 5}
        with FakeProcess(control, "router", ALL, counters=received), FakeProcess(control, "aggregator", []):
            poll_until(lambda: control.live("router", "aggregator"), what="router 0 and the aggregator live")
            assert health.Check(request, timeout=5).status == answer.NOT_SERVING  # router.1 has not reported
            with FakeProcess(control, "router.1", ALL, counters={"tick.received": 7}):
                poll_until(lambda: health.Check(request, timeout=5).status == answer.SERVING, 10, what="SERVING")
                assert control.metrics().channels[0].received == 12  # tick: both routers' counters


def test_sighup_applies_the_edited_config_file_as_a_new_version(control: Control) -> None:
    def listed() -> pb.ListChannelsResponse:
        return control.stub.ListChannels(pb.ListChannelsRequest(), metadata=control.md, timeout=5)

    text = control.config_path.read_text()
    control.config_path.write_text(text + "\n[channels.ohlcv.rules]\nbig_move_pct = 4.0\n")
    control.proc.send_signal(signal.SIGHUP)
    reply: pb.ListChannelsResponse = poll_until(
        lambda: (r := listed()).config_version == 1 and r, 10, what="the file config as version 1"
    )
    ohlcv = next(c for c in reply.channels if c.name == "ohlcv")
    assert (ohlcv.rules["big_move_pct"], ohlcv.config_version) == ("4.0", 1)
    control.config_path.write_text(text + "\n[channels.ohlcv.rules]\nbig_move_pct = -1\n")  # invalid
    control.proc.send_signal(signal.SIGHUP)
    poll_until(lambda: "config file not applied" in control.log.read_text(), 10, what="the bad file reported")
    assert listed().config_version == 1 and control.proc.poll() is None
