"""The journal process on both backends: conservation across kill -9, metrics on the bus, runs."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

import pytest

from journal.query import build_query
from tests.conftest import JournalBackend
from tests.integration.journal_helpers import Recorder, journal_mesh, open_journal, start_journal, wait_journaled
from tests.integration.test_reliability import _highs, market
from tests.mesh import Mesh, poll_until
from tickmesh.config import CHANNELS
from tickmesh.schema import Record


@pytest.mark.timeout(180)
def test_every_event_seen_is_journaled_exactly_once_across_two_kill_9(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend
) -> None:
    mesh = journal_mesh(mesh_factory, journal_backend)
    recorder = Recorder(mesh)
    start_journal(mesh, "journal.0")
    records = market(seed=15, seconds=20, rate=2_000)  # trades, bars and FMV updates, in time order
    rounds = [records[i : i + len(records) // 3 + 1] for i in range(0, len(records), len(records) // 3 + 1)]
    for round_, chunk in enumerate(rounds):
        pushing = threading.Thread(target=paced_push, args=(mesh, chunk, 10_000))
        pushing.start()
        if round_ < 2:  # kill -9 once this instance has committed some, while events still stream in
            name = f"journal.{round_}"
            pid = mesh.procs[name].pid
            poll_until(partial(_stored, mesh, pid, 20), 30, what=f"{name} storing")
            mesh.stop(name, signal.SIGKILL)
            start_journal(mesh, f"journal.{round_ + 1}")
        pushing.join()
    pushed = time.time_ns()

    def drained() -> bool:  # the router holds nothing: every event of every record is published
        router = mesh.read_bus().get("router")
        if router is None or router.time_ns <= pushed:
            return False
        gauges = router.gauges
        return all(gauges.get(f"{ch}.unacked") == 0 and gauges.get(f"{ch}.queue_depth") == 0 for ch in CHANNELS)

    poll_until(drained, 30, what="every record's events published")
    settled = time.time_ns()
    aggregator = poll_until(lambda: (a := mesh.read_bus()["aggregator"]).time_ns > settled and a, 10, what="report")
    published = aggregator.counters["published"]
    poll_until(lambda: recorder.received and recorder.received[-1].seq >= published, 15, what="all seen")
    sub = recorder.close()  # nothing more is published now: what it saw is everything
    last = recorder.received[-1]
    wait_journaled(mesh, journal_backend, last.epoch, last.seq)
    poll_until(lambda: mesh.read_bus()["journal"].gauges.get("journal.lag") == 0.0, 15, what="lag 0")
    store = open_journal(mesh, journal_backend)
    try:
        rows = [row.id for row in store.pages(build_query(order="published", limit=5_000))]
    finally:
        store.close()
    seen_ids = [p.event.id for p in recorder.received]
    assert len(seen_ids) > 100 and sub.lost == 0
    assert len(set(seen_ids)) == len(seen_ids)
    counts = Counter(rows)
    assert set(counts) == set(seen_ids), "missing or extra events"
    assert max(counts.values()) == 1
    assert mesh.read_bus()["journal"].counters.get("journal.lost", 0) == 0
    assert all("LOST" not in mesh.log(f"journal.{i}") for i in range(3))


def test_the_journal_reports_on_the_bus_tags_its_run_and_enforces_retention(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend
) -> None:
    mesh = journal_mesh(mesh_factory, journal_backend, journal={"max_rows": 60})
    start_journal(mesh, "journal", "--run", "threshold-a")
    mesh.push(_highs(20, 6))  # 20 × 5 highs
    status = poll_until(
        lambda: (s := mesh.read_bus()["journal"]).counters.get("journal.stored", 0) >= 100 and s, 20, what="stored"
    )
    assert status.role == "journal" and status.channels == []

    # retention runs in the background: the 40 oldest go, and the gauges say so
    def trimmed_to_60() -> bool:
        journal = mesh.read_bus()["journal"]
        return journal.counters.get("journal.trimmed") == 40 and journal.gauges.get("journal.rows") == 60

    poll_until(trimmed_to_60, 20, what="the 40 oldest trimmed, 60 rows kept")
    journal = mesh.read_bus()["journal"]
    assert journal.gauges["journal.lag"] == 0
    assert journal.gauges["journal.bytes"] > 0 and journal.gauges["journal.oldest_event_ns"] > 0
    assert "journal.write_rate" in journal.gauges
    store = open_journal(mesh, journal_backend)
    try:
        rows = list(store.pages(build_query(order="published", limit=1_000)))
    finally:
        store.close()
    assert [r.seq for r in rows] == list(range(41, 101)) and {r.run for r in rows} == {"threshold-a"}


def paced_push(mesh: Mesh, records: list[Record], per_s: float, slice_: int = 500) -> None:
    """Send records at about `per_s`, then flush: a stream that lasts, so a kill lands in the middle of it."""
    producer = mesh.producer()
    started = time.monotonic()
    for i in range(0, len(records), slice_):
        producer.send(records[i : i + slice_])
        time.sleep(max(0.0, started + (i + slice_) / per_s - time.monotonic()))  # pacing, not waiting for a signal
    producer.flush()


def _stored(mesh: Mesh, pid: int, more_than: int) -> bool:
    """The journal instance `pid` has reported storing more than `more_than` events."""
    status = mesh.read_bus().get("journal")
    return bool(status and status.pid == pid and status.counters.get("journal.stored", 0) > more_than)


def test_what_the_ring_no_longer_holds_is_counted_and_logged_as_lost(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend
) -> None:
    mesh = journal_mesh(mesh_factory, journal_backend, aggregator={"replay_size": 100})
    recorder = Recorder(mesh)
    start_journal(mesh, "journal.0")
    mesh.push(_highs(10, 6))  # 50 events
    poll_until(lambda: len(recorder.received) >= 50, 20, what="the first 50")
    wait_journaled(mesh, journal_backend, recorder.received[0].epoch, 50)
    mesh.stop("journal.0", signal.SIGKILL)
    mesh.push(_highs(50, 11, prefix="L"))  # 500 more while the journal is down; the ring keeps the last 100
    poll_until(lambda: len(recorder.received) >= 550, 20, what="all 550")
    recorder.close()
    start_journal(mesh, "journal.1")
    wait_journaled(mesh, journal_backend, recorder.received[0].epoch, 550)
    poll_until(lambda: mesh.read_bus()["journal"].counters.get("journal.lost") == 400, 10, what="lost 400")
    assert "LOST 400 publications after seq 50" in mesh.log("journal.1")
    store = open_journal(mesh, journal_backend)
    try:
        assert [r.seq for r in store.pages(build_query(order="published", limit=1_000))] == [
            *range(1, 51),
            *range(451, 551),
        ]
    finally:
        store.close()


def test_an_aggregator_restart_is_a_new_epoch_read_from_its_ring(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend
) -> None:
    mesh = journal_mesh(mesh_factory, journal_backend)
    start_journal(mesh, "journal")
    mesh.push(_highs(10, 6))  # 50 events in the first epoch
    poll_until(lambda: mesh.read_bus()["journal"].counters.get("journal.stored", 0) >= 50, 20, what="epoch 1")
    assert mesh.stop("aggregator") == 0
    mesh.spawn("aggregator.2", "-m", "aggregator")
    mesh.push(_highs(10, 6, prefix="E"))  # 50 more, published by the new aggregator from seq 1
    journal = poll_until(
        lambda: (j := mesh.read_bus()["journal"]).counters.get("journal.stored", 0) >= 100 and j, 30, what="epoch 2"
    )
    assert journal.counters.get("journal.epoch_changes") == 1 and journal.counters.get("journal.lost", 0) == 0
    store = open_journal(mesh, journal_backend)
    try:
        rows = list(store.pages(build_query(order="published", limit=1_000)))
        position = store.position()
    finally:
        store.close()
    epochs = sorted({r.epoch for r in rows})
    assert len(epochs) == 2 and position == (epochs[1], 50)
    assert [r.seq for r in rows] == [*range(1, 51), *range(1, 51)]
    assert {r.ticker[0] for r in rows if r.epoch == epochs[1]} == {"E"}
