"""The control plane steering the real mesh: live thresholds, batch sizes, pause/resume, metrics that add up."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc
from tests.mesh import Mesh, collect, drain, poll_until
from tickmesh.schema import Bar, BigMove, FairMarketValue, Record, Trade

S = 1_000_000_000


class Admin:
    """A gRPC client of the mesh's control process."""

    def __init__(self, mesh: Mesh) -> None:
        token = os.environ.get("TICKMESH_ADMIN_TOKEN")
        if not token:  # control runs in mesh.dir and writes the token file there
            path = mesh.dir / ".tickmesh" / "admin.token"
            token = str(poll_until(lambda: path.exists() and path.read_text().strip(), 15, what="the token file"))
        self.md = [("authorization", f"Bearer {token}")]
        self.channel = grpc.insecure_channel(mesh.endpoints.grpc)
        self.stub = pb_grpc.ControlStub(self.channel)

    def update(self, channel: str, **changes: Any) -> pb.UpdateChannelResponse:
        req = pb.UpdateChannelRequest(channel=channel, changes={k: str(v) for k, v in changes.items()})
        return self.stub.UpdateChannel(req, metadata=self.md, timeout=15)

    def metrics(self) -> pb.MetricsSnapshot:
        return self.stub.GetMetrics(pb.GetMetricsRequest(), metadata=self.md, timeout=5)

    def channel_metrics(self, channel: str) -> pb.ChannelMetrics:
        return next(c for c in self.metrics().channels if c.channel == channel)

    def live(self, names: list[str]) -> bool:
        try:
            live = {p.process for p in self.metrics().processes if p.live}
        except grpc.RpcError:  # not listening yet
            return False
        return set(names) <= live


@pytest.fixture
def steered(mesh_factory: Callable[..., Mesh]) -> Iterator[tuple[Mesh, Admin]]:
    """A mesh (router, one worker per channel, aggregator) with the real control process in it."""
    mesh = mesh_factory({"control": {"ack_timeout_s": 5.0}})
    mesh.spawn("control", "-m", "control")
    mesh.start(with_bus=False)
    admin = Admin(mesh)
    poll_until(lambda: admin.live(mesh.process_names()), 20, what=f"{mesh.process_names()} live in control")
    yield mesh, admin
    admin.channel.close()


def bar(ticker: str, pct: float, end: int) -> Bar:
    """A one-minute bar moving `pct` % from open to close, closing inside its range."""
    close = 100.0 * (1 + pct / 100)
    return Bar(ticker, open=100.0, high=close + 1.0, low=99.0, close=close, volume=1_000, start=end - 60 * S, end=end)


def settled(admin: Admin, channel: str, **expected: int) -> pb.ChannelMetrics:
    """The channel's metrics once every named counter has reached at least its expected value."""

    def check() -> pb.ChannelMetrics | None:
        metrics = admin.channel_metrics(channel)
        return metrics if all(getattr(metrics, k) >= v for k, v in expected.items()) else None

    metrics: pb.ChannelMetrics = poll_until(check, what=f"{channel} {expected}")
    return metrics


def published(admin: Admin, n: int) -> pb.MetricsSnapshot:
    """The mesh metrics once the aggregator has published at least `n` events."""

    def check() -> pb.MetricsSnapshot | None:
        snap = admin.metrics()
        return snap if snap.aggregator.published >= n else None

    snap: pb.MetricsSnapshot = poll_until(check, what=f"{n} published")
    return snap


def test_raising_big_move_pct_live_changes_which_bars_are_big_moves(steered: tuple[Mesh, Admin]) -> None:
    mesh, admin = steered
    sub = mesh.subscriber()
    now = time.time_ns()
    mesh.push([bar("AAA", 3.0, now)])  # 3 % > 2.0: a big move under the starting config
    first = collect(sub, lambda r: any(isinstance(p.event, BigMove) for p in r))
    assert [p.event.ticker for p in first if isinstance(p.event, BigMove)] == ["AAA"]

    reply = admin.update("ohlcv", big_move_pct=5.0)
    assert reply.config_version == 1 and reply.channel.rules["big_move_pct"] == "5.0"
    assert {"router", "worker.ohlcv.0"} <= set(reply.acked)

    mesh.push([bar("BBB", 3.0, now), bar("CCC", 6.0, now)])  # same stream, in order: BBB is decided first
    later = collect(sub, lambda r: any(isinstance(p.event, BigMove) for p in r))
    later += drain(sub)
    assert [(p.event.ticker, round(p.event.pct, 6)) for p in later if isinstance(p.event, BigMove)] == [("CCC", 6.0)]
    ohlcv = settled(admin, "ohlcv", processed=3)
    assert (ohlcv.received, ohlcv.routed, ohlcv.processed, ohlcv.events["big_move"]) == (3, 3, 3, 2)


def test_a_restarted_control_continues_from_the_live_config(steered: tuple[Mesh, Admin]) -> None:
    mesh, admin = steered
    assert admin.update("ohlcv", big_move_pct=5.0).config_version == 1
    admin.channel.close()
    control = mesh.procs["control"]
    control.terminate()
    assert control.wait(20) == 0
    mesh.spawn("control", "-m", "control")  # reads the file's big_move_pct = 2.0 at start
    again = Admin(mesh)

    def adopted() -> pb.ListChannelsResponse | None:
        try:
            listed = again.stub.ListChannels(pb.ListChannelsRequest(), metadata=again.md, timeout=5)
        except grpc.RpcError:  # not listening yet
            return None
        return listed if listed.config_version == 1 else None

    listed: pb.ListChannelsResponse = poll_until(adopted, 20, what="the live config adopted")
    ohlcv = next(c for c in listed.channels if c.name == "ohlcv")
    assert (ohlcv.rules["big_move_pct"], ohlcv.config_version) == ("5.0", 1)
    poll_until(lambda: again.live(["router", "worker.ohlcv.0"]), 20, what="holders live in the new control")
    reply = again.update("ohlcv", batch_size=40)  # built on the live config, not on the file
    assert (reply.config_version, reply.channel.batch_size, reply.channel.rules["big_move_pct"]) == (2, 40, "5.0")
    again.channel.close()


def test_a_new_fmv_batch_size_shows_in_the_batches_sent(steered: tuple[Mesh, Admin]) -> None:
    mesh, admin = steered
    now = time.time_ns()
    updates: list[Record] = [FairMarketValue(f"T{i}", 100.0, now + i, market_price=100.0) for i in range(30)]
    mesh.push(updates)  # default batch size 50: one batch (flushed by the producer's mark or the timeout)
    before = settled(admin, "fmv", processed=30, routed=30, batches=1)
    reply = admin.update("fmv", batch_size=10, timeout_ms=60_000)
    assert reply.channel.batch_size == 10 and {"router", "worker.fmv.0"} <= set(reply.acked)
    mesh.push([FairMarketValue(f"T{i}", 100.0, now + S + i, market_price=100.0) for i in range(30)])  # type: ignore[misc]
    after = settled(admin, "fmv", processed=60, routed=60, batches=before.batches + 3)
    assert before.batches == 1
    assert after.batches == 4  # then 30 records at 10 per batch
    assert (after.received, after.routed) == (60, 60)


def test_pause_and_resume_with_the_counters_to_prove_it(steered: tuple[Mesh, Admin]) -> None:
    mesh, admin = steered
    now = time.time_ns()
    paused = admin.stub.PauseChannel(pb.ChannelRequest(channel="tick"), metadata=admin.md, timeout=15)
    assert paused.channel.paused and {"router", "worker.tick.0"} <= set(paused.acked)
    mesh.push([Trade("PAUS", 10.0 + i / 100, 1, now + i * S) for i in range(20)])
    held = settled(admin, "tick", received=20, paused_dropped=20)
    assert (held.routed, held.processed) == (0, 0)

    resumed = admin.stub.ResumeChannel(pb.ChannelRequest(channel="tick"), metadata=admin.md, timeout=15)
    assert not resumed.channel.paused and resumed.config_version == 2
    mesh.push([Trade("GOGO", 10.0 + i / 100, 1, now + i * S) for i in range(5)])
    flowing = settled(admin, "tick", received=25, routed=5, processed=5)  # the router reports apart from the worker
    assert (flowing.received, flowing.routed, flowing.processed, flowing.paused_dropped) == (25, 5, 5, 20)


def test_metrics_agree_with_what_was_pushed_and_published(steered: tuple[Mesh, Admin]) -> None:
    mesh, admin = steered
    sub = mesh.subscriber()
    now = time.time_ns()
    trades = [Trade("UP", 100.0 + i, 10, now + i * 2 * S) for i in range(4)]  # three new highs
    mesh.push([*trades, bar("BAR", 2.5, now), FairMarketValue("UP", 106.0, now + 10 * S)])
    received = collect(sub, lambda r: len(r) >= 5)
    received += drain(sub)
    snap = published(admin, len(received))
    by_channel = {c.channel: c for c in snap.channels}
    for channel, n in (("tick", 4), ("ohlcv", 1), ("fmv", 1)):
        assert (by_channel[channel].received, by_channel[channel].routed) == (n, n)
        assert by_channel[channel].processed == n
    assert snap.aggregator.published == len(received)
    events = sum(c.events_total for c in snap.channels)
    assert events == snap.aggregator.received == len(received) + snap.aggregator.deduplicated_total
    roles = {p.process: p.role for p in snap.processes if p.live}
    assert {"router", "aggregator", "worker.tick.0", "control"} <= set(roles)
