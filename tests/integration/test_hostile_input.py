"""Hostile bytes on every socket a mesh process reads: no process stops, each rejection is counted, valid data flows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import msgspec
import psutil
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc
from tests.mesh import Mesh, collect, poll_until
from tickmesh.bus import Status, encode_status
from tickmesh.schema import Checkpointed, Delivered, EventBatch, Hello, High, MarkQuery, ReplayRequest, Trade, encoder

TOKEN = "hostile-test-token-0123456789"
S = 1_000_000_000
# The frames that each stopped a process before the decode boundary (issue 18), by socket.
ONE_FRAME_OUTAGES = [
    ("ingest", [bytes.fromhex("9191a1ff")], "ingest.rejected.bad_utf8"),
    ("acks", [bytes.fromhex("97a361636ba1ff000101a166a178")], "acks.rejected"),  # the old untyped Ack
    ("acks", [bytes.fromhex("96a568656c6c6fa1ff000101a178")], "acks.rejected.bad_utf8"),  # the same in a Hello
    ("sync", [bytes.fromhex("92a1e0a1e0")], "sync.rejected.bad_utf8"),
    ("sync", [b"a", b"b", b"c"], "sync.rejected.frames"),
    ("events", [bytes.fromhex("91a1ff")], "events.rejected"),
    ("replay", [bytes.fromhex("81a474797065a1ff")], "replay.rejected.bad_utf8"),
    ("control_status", [bytes.fromhex("81a474797065a1ff")], "control.status_invalid"),
]


class Hostile:
    """A mesh with a real control process, and a local process that sends it whatever it likes."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.stub = pb_grpc.ControlStub(grpc.insecure_channel(mesh.endpoints.grpc))
        self.socks: dict[str, zmq.Socket[Any]] = {}
        self.n = 0

    def send(self, socket: str, frames: list[bytes]) -> None:
        sock = self.socks.get(socket)
        if sock is None:
            kind = zmq.DEALER if socket in ("sync", "replay") else zmq.PUSH
            sock = self.socks[socket] = self.mesh.ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 100_000)
            sock.connect(getattr(self.mesh.endpoints, socket))
        # sync (REP) and replay (ROUTER) are asked as a REQ would: an empty delimiter, then the request
        sock.send_multipart([b"", *frames] if sock.type == zmq.DEALER else frames)
        while sock.type == zmq.DEALER and sock.poll(0):
            sock.recv_multipart()  # replies to what we sent: read and dropped

    def metrics(self) -> pb.MetricsSnapshot:
        return self.stub.GetMetrics(pb.GetMetricsRequest(), metadata=[("authorization", f"Bearer {TOKEN}")])

    def counted(self, prefix: str) -> int:
        """The sum of every mesh-wide counter whose name starts with `prefix`."""
        return sum(v for k, v in self.metrics().counters.items() if k.startswith(prefix))

    def all_up(self) -> None:
        for name, proc in self.mesh.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.mesh.log(name)[-3000:]}"

    def valid_traffic_flows(self) -> None:
        """A fresh ticker's rising trades yield its tick highs on the PUB socket."""
        self.n += 1
        ticker, now = f"OK{self.n}", time.time_ns()
        sub = self.mesh.subscriber(tickers=[ticker])
        self.mesh.push([Trade(ticker, 100.0 + i, 100, now + i * 2 * S) for i in range(3)])
        highs = collect(sub, lambda got: len(got) >= 2, timeout=15)
        assert [p.event.price for p in highs] == [101.0, 102.0]
        sub.close()


@pytest.fixture
def hostile(mesh_factory: Callable[..., Mesh]) -> Iterator[Hostile]:
    mesh = mesh_factory()
    mesh.env["TICKMESH_ADMIN_TOKEN"] = TOKEN
    mesh.spawn("control", "-m", "control")
    mesh.start(with_bus=False)
    h = Hostile(mesh)
    wanted = {"router", "aggregator", "worker.tick.0", "worker.ohlcv.0", "worker.fmv.0"}

    def reporting() -> bool:
        try:
            return wanted <= {p.process for p in h.metrics().processes if p.live}
        except grpc.RpcError:
            return False

    poll_until(reporting, 20, what="every process reporting to control")
    yield h
    for sock in h.socks.values():
        sock.close(0)


@pytest.mark.parametrize(("socket", "frames", "counter"), ONE_FRAME_OUTAGES, ids=lambda v: str(v)[:24])
def test_a_frame_that_used_to_stop_a_process_is_counted_and_the_mesh_flows(
    hostile: Hostile, socket: str, frames: list[bytes], counter: str
) -> None:
    hostile.send(socket, frames)
    poll_until(lambda: hostile.counted(counter) >= 1, 10, what=f"{counter} counted")
    hostile.all_up()
    hostile.valid_traffic_flows()


def _samples() -> dict[str, bytes]:
    now = time.time_ns()
    event = High("tick:high:X:1", "X", "tick", 1, now, 10.0, 0, now, now)
    status = Status("fuzz", "worker", ["tick"], "h", 1, 0, now, now, {"a": 1}, {"b": 1.0})
    return {
        "ingest": encoder.encode([Trade("FUZ", 10.0, 1, now), Trade("FUZ", 10.5, 1, now + S)]),
        "acks": encoder.encode(Checkpointed("tick", 0, 1, 5, "fuzz")),
        "sync": encoder.encode(MarkQuery("fuzz", 1)),
        "events": encoder.encode(EventBatch("fuzz", "tick", 0, 1, 5, [event])),
        "replay": encoder.encode(ReplayRequest(since=0)),
        "control_status": encode_status(status),
    }


SAMPLES = _samples()


def hostile_messages(sample: bytes) -> st.SearchStrategy[list[bytes]]:
    """Random bytes, the valid sample with bytes changed or cut off, and wrong frame counts."""
    mutated = st.builds(
        lambda edits, cut: _mutate(sample, edits)[:cut],
        st.lists(st.tuples(st.integers(0, len(sample) - 1), st.integers(0, 255)), min_size=1, max_size=4),
        st.integers(1, len(sample)),
    )
    frame = st.one_of(st.binary(max_size=64), mutated)
    return st.one_of(frame.map(lambda f: [f]), st.lists(frame, min_size=2, max_size=4))


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        out[at] = value
    return bytes(out)


@pytest.mark.slow
@pytest.mark.parametrize("socket", sorted(SAMPLES))
def test_fuzzed_frames_on_each_socket_stop_nothing(hostile: Hostile, socket: str) -> None:
    sent = 0

    @settings(
        max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(hostile_messages(SAMPLES[socket]))
    def send(frames: list[bytes]) -> None:
        nonlocal sent
        hostile.send(socket, frames)
        sent += 1

    send()
    assert sent >= 200
    hostile.all_up()
    hostile.valid_traffic_flows()
    hostile.all_up()


def test_forged_or_invalid_events_are_refused_one_by_one_and_valid_ones_published(hostile: Hostile) -> None:
    now = time.time_ns()
    sub = hostile.mesh.subscriber()

    def high(ticker: str, price: float, **fields: Any) -> bytes:
        values: dict[str, Any] = dict(id=f"tick:high:{ticker}:{now}", ticker=ticker, source="tick", priority=1,
                                      time=now, price=price, record_seq=0, ingest_ns=now, detected_ns=now)  # fmt: skip
        values.update(fields)
        return encoder.encode({"kind": "high", **values})

    bad = [
        high("NANPX", float("nan")),
        high("AAPL/evil", 10.0),
        high("NEGPRIO", 10.0, priority=-5),
        high("X" * 100_000, 10.0),
        high("INFPX", float("inf")),
        high("OTHER", 10.0, source="ohlcv"),  # not the batch's channel: cannot suppress tick highs
        high("NOSOURCE", 10.0, source="evil"),
    ]
    frame = encoder.encode(
        ["events", "forger", "tick", 0, 1, 0, [*map(msgspec.Raw, bad), msgspec.Raw(high("GOOD", 9.0))]]
    )
    before = hostile.counted("events.rejected")
    hostile.send("events", [frame])
    got = collect(sub, lambda r: any(p.event.ticker == "GOOD" for p in r))
    assert {p.event.ticker for p in got} == {"GOOD"}
    poll_until(lambda: hostile.counted("events.rejected") - before == len(bad), 10, what="each bad event counted")
    assert hostile.counted("events.rejected.wrong_source") == 1
    assert hostile.metrics().aggregator.input_rejected["events.wrong_source"] == 1  # what tickmesh-admin shows
    hostile.all_up()


def test_a_trade_stamped_2099_is_rejected_and_the_tickers_genuine_trades_yield_events(hostile: Hostile) -> None:
    now = time.time_ns()
    sub = hostile.mesh.subscriber(tickers=["FUT"])
    year_2099 = 4_070_908_800 * S
    hostile.mesh.push([Trade("FUT", 50.0, 100, now), Trade("FUT", 99.0, 100, year_2099)])
    hostile.mesh.push([Trade("FUT", 50.0 + i, 100, now + i * 2 * S) for i in range(1, 3)])
    highs = collect(sub, lambda got: len(got) >= 2)
    assert [(p.event.price, p.event.time) for p in highs] == [(51.0, now + 2 * S), (52.0, now + 4 * S)]
    poll_until(lambda: hostile.metrics().channels[0].rejected["future_timestamp"] == 1, 10, what="the rejection")


def test_a_forged_status_carrying_a_config_changes_nothing(hostile: Hostile) -> None:
    now = time.time_ns()
    paused = {name: {"paused": True} for name in ("tick", "ohlcv", "fmv")}
    forged = {"type": "status", "process": "router", "role": "router", "channels": ["tick", "ohlcv", "fmv"],
              "host": "h", "pid": 1, "config_version": 2**62, "started_ns": now, "time_ns": now,
              "counters": {}, "gauges": {}, "config": ["config", 5, paused, {}]}  # fmt: skip
    hostile.send("control_status", [msgspec.msgpack.encode(forged)])
    poll_until(lambda: hostile.counted("control.status_received") > 0, 10, what="reports received")
    listed = hostile.stub.ListChannels(pb.ListChannelsRequest(), metadata=[("authorization", f"Bearer {TOKEN}")])
    assert listed.config_version == 0 and not any(c.paused for c in listed.channels)
    hostile.valid_traffic_flows()


def test_forged_acks_cannot_release_records_or_amplify_resends(hostile: Hostile) -> None:
    mesh = hostile.mesh
    epoch = int((mesh.dir / ".tickmesh" / "state" / "router.epoch").read_text())
    hostile.valid_traffic_flows()  # the tick stream has sent something in this epoch
    forged = [
        Checkpointed("tick", 0, epoch, 10**9, "forger"),  # beyond what was routed
        Delivered("tick", 0, epoch, 10**9, "forger"),
        Checkpointed("tick", 0, epoch, 0, "forger"),  # not the instance that holds the stream
    ]
    for ack in forged:
        hostile.send("acks", [encoder.encode(ack)])
    poll_until(lambda: hostile.counted("acks.rejected.beyond_sent") == 2, 10, what="beyond_sent counted")
    poll_until(lambda: hostile.counted("acks.rejected.not_the_worker") >= 1, 10, what="not_the_worker counted")
    resent_before = hostile.counted("tick.resent")
    for _ in range(200):  # a flood of hellos from the start of the stream
        hostile.send("acks", [encoder.encode(Hello("tick", 0, epoch, -1, "forger"))])
    hostile.valid_traffic_flows()
    routed = hostile.metrics().channels[0].routed
    assert hostile.counted("tick.resent") - resent_before <= 3 * routed  # not 200 × what was routed
    hostile.all_up()


@pytest.mark.slow
def test_a_subscriber_that_stops_reading_costs_bounded_memory_given_back_when_it_leaves(hostile: Hostile) -> None:
    mesh = hostile.mesh
    aggregator = psutil.Process(mesh.procs["aggregator"].pid)
    stalled = mesh.ctx.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(mesh.endpoints.publish)
    poll_until(lambda: hostile.metrics().aggregator.subscribers >= 1, 10, what="the stalled subscriber counted")
    now = time.time_ns()
    for b in range(200):  # 100,000 distinct events, straight to the aggregator as a worker sends them
        events = [High(f"tick:high:R{b}:{i}", f"R{i % 50}", "tick", 1, now, 10.0, i, now, now) for i in range(500)]
        hostile.send("events", [encoder.encode(EventBatch("worker.tick.0:r", "tick", 0, 1, 0, events))])
    poll_until(lambda: hostile.counted("published") >= 100_000, 60, what="every event published")
    held = aggregator.memory_info().rss
    stalled.close(0)
    poll_until(lambda: aggregator.memory_info().rss < held - 15e6, 20, what="the stalled subscriber's queue given back")
    hostile.all_up()
