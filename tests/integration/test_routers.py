"""Two routers: tickers partitioned by the producer, every worker fed by both, nothing lost or reordered."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict

import pytest

from tests.integration.test_reliability import QUIET, Recorder, assert_conserved, market, push_paced, reference
from tests.mesh import Mesh, collect, poll_until
from tickmesh.config import CHANNELS
from tickmesh.schema import High, Publication, Trade
from tickmesh.sharding import router_of

S = 1_000_000_000
TWO = {"router": {"count": 2}, **QUIET}


def in_order(publications: list[Publication]) -> bool:
    """Each (source, ticker)'s events were published in data-time order (every ticker's records are)."""
    last: dict[tuple[str, str], int] = defaultdict(int)
    for p in publications:
        key = (p.event.source, p.event.ticker)
        if p.event.time < last[key]:
            return False
        last[key] = p.event.time
    return True


def highs(publications: list[Publication]) -> int:
    return sum(isinstance(p.event, High) for p in publications)


def nothing_held(mesh: Mesh) -> bool:
    """Both routers reported, just now, that they hold nothing: every record delivered and checkpointed."""
    mesh.counters()  # waits for fresh reports
    statuses = mesh.statuses
    return all(
        statuses[name].gauges.get(f"{ch}.unacked") == 0 and statuses[name].gauges.get(f"{ch}.queue_depth") == 0
        for name, _ in mesh.routers()
        for ch in CHANNELS
    )


def test_two_routers_conserve_every_record_and_keep_each_ticker_s_order(mesh_factory) -> None:
    mesh = mesh_factory({**TWO, "channels": {"tick": {"shards": 2}}}).start()
    records = market(5, seconds=60)
    expected = reference(records, mesh.config)
    recorder = Recorder(mesh)
    push_paced(mesh, records)  # the flush returns once both routers routed all they were sent
    recorder.wait_for(expected, mesh)
    recorder.stop()
    assert_conserved(recorder, expected)
    assert in_order(recorder.received)
    statuses = mesh.read_bus()
    for name, _ in mesh.routers():  # each router routed a share of every channel
        assert all(statuses[name].counters.get(f"{ch}.routed", 0) > 0 for ch in CHANNELS), name
    trades = sum(isinstance(r, Trade) for r in records)
    poll_until(lambda: mesh.counters().get("tick.processed") == trades, 20, what=f"{trades} trades processed")


@pytest.mark.slow  # fault injection
def test_kill_9_of_one_router_of_two_spares_the_other_s_tickers_and_a_restart_routes_again(mesh_factory) -> None:
    mesh = mesh_factory(TWO).start()
    records = market(9, seconds=40)
    expected = reference(records, mesh.config)
    recorder = Recorder(mesh)
    victim = mesh.procs["router.1"]
    push_paced(mesh, records[: len(records) // 2])
    poll_until(lambda: nothing_held(mesh), 30, what="the first half delivered and checkpointed")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    producer = mesh.producer()
    for i in range(len(records) // 2, len(records), 1_000):  # router 1's share waits in the producer's queue
        producer.send(records[i : i + 1_000])
    # Router 0's tickers flow on while router 1 is down: their events are all published, once.
    survivor = {i for i in expected if router_of(i.split(":")[2], 2) == 0}
    poll_until(lambda: survivor <= set(recorder.ids()), 30, what="router 0's tickers' events")
    mesh.spawn("router.1", "-m", "router", "--index", "1")
    mesh.wait_reporting(mesh.process_names(), after_ns=time.time_ns(), timeout=20)
    producer.flush(timeout_s=20)  # router 1 is back: its tickers' records queued in the producer go on
    poll_until(lambda: nothing_held(mesh), 30, what="everything delivered and checkpointed after the restart")
    recorder.stop()
    ids = recorder.ids()
    assert len(ids) == len(set(ids)), "an event was published twice"
    assert survivor <= set(ids)
    # what docs/state.md admits for a router's kill -9 is its own records in memory; router 1 held none
    # (the first half was checkpointed, the second queued in the producer): nothing is missing at all
    assert set(ids) == expected, f"missing {sorted(expected - set(ids))[:5]}, extra {sorted(set(ids) - expected)[:5]}"


def test_a_restarted_mesh_of_two_routers_resumes_every_stream(mesh_factory) -> None:
    mesh = mesh_factory(TWO).start()
    sub = mesh.subscriber()
    now = time.time_ns()
    tickers = ["RA", "RB", "RC", "RD", "RE", "RF"]
    assert {router_of(t, 2) for t in tickers} == {0, 1}
    mesh.push([Trade(t, 10.0 + i, 1, now - 60 * S + i * 2 * S) for i in range(3) for t in tickers])
    first = collect(sub, lambda got: highs(got) >= 2 * len(tickers))
    for name in list(mesh.procs):
        assert mesh.stop(name) == 0, mesh.log(name)
    mesh.statuses.clear()
    mesh.start(with_bus=False)
    mesh.wait_reporting(mesh.process_names(), after_ns=time.time_ns(), timeout=20)
    sub = mesh.subscriber()
    mesh.push([Trade(t, 20.0, 1, now - 50 * S) for t in tickers])  # a new high for each, from the saved state
    again = [p.event for p in collect(sub, lambda got: highs(got) >= len(tickers)) if isinstance(p.event, High)]
    assert sorted(e.ticker for e in again) == tickers
    assert all(e.previous == 12.0 for e in again)  # the saved session high of each ticker, on both routers
    assert {p.event.id for p in first}.isdisjoint(e.id for e in again)
    assert not any(k.endswith("state_moved_aside") for k in mesh.counters())


def test_a_router_index_beyond_the_count_is_refused_at_start(mesh_factory) -> None:
    mesh = mesh_factory(TWO)
    proc = mesh.spawn("router.2", "-m", "router", "--index", "2")
    assert proc.wait(20) == 2
    assert "--index 2 out of range: [router] count is 2" in mesh.log("router.2")
