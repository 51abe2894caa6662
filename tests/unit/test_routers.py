"""Several routers: derived endpoints, the producer's partition by ticker, config checks, health, `tickmesh up`."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest
import zmq

from control.app import data_path
from router.app import Router
from tickmesh.config import Config, ConfigError, load_config, router_endpoints
from tickmesh.meshrun import processes
from tickmesh.producer import Producer
from tickmesh.schema import Trade, ingest_decoder
from tickmesh.security import server_roles
from tickmesh.sharding import router_of, shard_of

T0 = 1_767_225_600_000_000_000


def test_router_0_keeps_the_base_endpoints_and_the_others_derive_theirs() -> None:
    config = msgspec.convert({"router": {"count": 3}}, Config)
    zero, one, two = router_endpoints(config)
    assert zero == config.endpoints
    assert (one.ingest, one.sync, two.ingest) == (
        "tcp://127.0.0.1:5650",
        "tcp://127.0.0.1:5651",
        "tcp://127.0.0.1:5750",
    )
    assert one.acks == "ipc://.tickmesh/run/acks-r1" and one.shard("tick", 2) == "ipc://.tickmesh/run/tick-r1-2"
    assert (one.events, one.publish, one.grpc) == (zero.events, zero.publish, zero.grpc)  # not the router's own


def test_the_default_is_one_router_and_overlapping_derived_endpoints_are_refused(tmp_path) -> None:
    assert Config().router.count == 1 and router_endpoints(Config()) == [Config().endpoints]
    path = tmp_path / "tickmesh.toml"
    path.write_text('[router]\ncount = 2\n[endpoints]\nsync = "tcp://127.0.0.1:5650"\n')
    with pytest.raises(ConfigError, match="router 1's ingest endpoint tcp://127.0.0.1:5650 is also"):
        load_config(str(path), env={})
    path.write_text("[router]\ncount = 17\n")
    with pytest.raises(ConfigError, match="count"):
        load_config(str(path), env={})


def test_a_ticker_s_router_is_stable_and_independent_of_its_shard() -> None:
    tickers = [f"T{i}" for i in range(2_000)]
    assert [router_of(t, 2) for t in tickers] == [router_of(t, 2) for t in tickers]
    assert all(router_of(t, 1) == 0 for t in tickers)
    pairs = Counter((router_of(t, 2), shard_of(t, 2)) for t in tickers)
    assert len(pairs) == 4 and min(pairs.values()) > 400  # every router feeds every shard, about evenly


def test_the_producer_sends_each_ticker_to_its_router_in_order() -> None:
    ctx = zmq.Context()
    try:
        producer = Producer(ctx, msgspec.convert({}, Config).endpoints, routers=3)
        trades = [Trade(f"S{i % 40}", 10.0 + i, 1, T0 + i) for i in range(400)]
        frames = producer.frames(trades)
        assert [r for r, _, _ in frames] == sorted({router_of(t.ticker, 3) for t in trades})
        for router, frame, n in frames:
            part = ingest_decoder.decode(frame)
            assert len(part) == n and part == [t for t in trades if router_of(t.ticker, 3) == router]
        wire = [("T", t.ticker, t.price, t.size, t.timestamp) for t in trades]  # pre-encoded records, as the bench's
        split = producer.frames(wire, lambda r: r[1])
        assert [(r, ingest_decoder.decode(f), n) for r, f, n in split] == [
            (r, ingest_decoder.decode(f), n) for r, f, n in frames
        ]
        producer.close()
    finally:
        ctx.destroy(linger=0)


def test_every_router_is_part_of_the_health_and_of_the_curve_server_table() -> None:
    config = msgspec.convert({"router": {"count": 3}}, Config)
    assert data_path(config) == {"router", "router.1", "router.2", "aggregator"}
    assert data_path(Config()) == {"router", "aggregator"}
    roles = server_roles(config)
    for ep in router_endpoints(config):
        assert roles[ep.ingest] == roles[ep.acks] == roles[ep.shard("fmv", 5)] == "router"


def test_tickmesh_up_runs_one_router_per_configured_router() -> None:
    assert "router1" not in processes(["sim"])
    procs = processes(["sim"], python="/x/python", routers=3)
    assert procs["router"].endswith("-m router")
    assert procs["router2"] == "exec /x/python -m router --index 2"


class _GoneBetweenPollAndSend:
    """A shard's PUSH socket whose peer went away after the router's poll (a kill -9 at that moment)."""

    def poll(self, timeout: int, flags: int) -> int:
        return zmq.POLLOUT

    def send(self, data: bytes, flags: int) -> None:
        raise zmq.Again()


def test_a_shard_gone_between_the_poll_and_the_send_costs_the_send_not_the_router(tmp_path) -> None:
    """The batch stays held by its stream, to be sent again when the shard asks (Hello, or Gap)."""
    config = msgspec.convert(
        {
            "endpoints": {name: f"ipc://{tmp_path}/{name}" for name in ("ingest", "sync", "acks", "control_config",
                                                                         "control_status", "tick", "ohlcv", "fmv")},
            "state": {"dir": str(tmp_path / "state")},
        },
        Config,
    )  # fmt: skip
    ctx = zmq.Context()
    router = Router(config, ctx)
    real, pushes = router.pushes["tick"][0], router.pushes["tick"]
    try:
        pushes[0] = _GoneBetweenPollAndSend()  # type: ignore[call-overload]
        box = router.outboxes["tick"][0]
        box.records.append(Trade("GONE", 10.0, 1, T0))
        box.ingest_ns.append(T0)
        router._flush_channel("tick", T0, force=True)  # must not raise
        assert router.metrics.counters["tick.send_failed"] == 1
        assert box.stream.in_flight == 1 and not box.records  # held by the stream, not lost
    finally:
        pushes[0] = real
        router.close()
        ctx.term()
