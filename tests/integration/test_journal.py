"""The journal process on both backends: conservation across kill -9, metrics on the bus, runs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from bench.soak import soak
from journal.query import build_query
from tests.conftest import JournalBackend
from tests.integration.journal_helpers import (
    journal_mesh,
    open_journal,
    record_publications,
    start_journal,
    wait_journaled,
)
from tests.integration.test_reliability import _highs
from tests.mesh import Mesh, poll_until
from tickmesh.config import CHANNELS
from tickmesh.schema import Record


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_soak_every_event_seen_is_journaled_exactly_once_across_two_kill_9(
    journal_backend: JournalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m bench.soak` for 15 s, kills at 5 and 10 s (the 5-minute run is in docs/benchmarks.md)."""
    for key, value in journal_backend.env.items():
        monkeypatch.setenv(key, value)  # the DSN, for the journal processes and the soak's reads
    result = soak(minutes=0.25, backend=journal_backend.name, rate=5_000)
    assert result["seen"] > 100 and result["journaled"] == result["seen"], result
    assert result["missing"] == result["extra"] == result["stored_twice"] == 0, result
    assert result["journal_lost"] == result["subscriber_lost"] == 0 and result["ok"], result


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
    for tid in os.listdir(f"/proc/{mesh.pid('journal')}/task"):  # every thread, the writer's and zmq's too
        assert os.sched_getscheduler(int(tid)) == os.SCHED_IDLE  # never on the latency path

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


def test_what_the_ring_no_longer_holds_is_counted_and_logged_as_lost(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend
) -> None:
    mesh = journal_mesh(mesh_factory, journal_backend, aggregator={"replay_size": 100})
    recorder = record_publications(mesh)
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
    assert "stopping: 0 workers stopped with it\n" in mesh.log("aggregator")  # stopped alone: no wait for them
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


def test_a_whole_mesh_stop_journals_what_the_aggregator_publishes_after_the_journals_own_signal(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend
) -> None:
    """The journal and the aggregator get SIGTERM together (as `honcho start` stops) while events still flow:
    the aggregator goes on publishing until the workers stop, and the journal follows it to its final
    heartbeat instead of stopping at its own signal."""
    mesh = journal_mesh(mesh_factory, journal_backend)
    recorder = record_publications(mesh)
    start_journal(mesh, "journal")
    with mesh.push_paced(_highs(40, 50)):  # up to 1,960 highs, 100 every 0.1 s
        poll_until(lambda: len(recorder.received) >= 200, 20, what="events flowing")
        signalled_ns = time.time_ns()
        for name in ("journal", "aggregator"):
            mesh.procs[name].send_signal(signal.SIGTERM)
        published_after = lambda: sum(p.published_ns > signalled_ns for p in recorder.received)  # noqa: E731
        poll_until(lambda: published_after() >= 100, 10, what="100 published after the journal's signal")
    mesh.stop_the_rest()
    assert mesh.procs["aggregator"].wait(10) == 0 and mesh.procs["journal"].wait(10) == 0
    poll_until(lambda: recorder.sub.silent_for() > 0.3, 10, what="the stream to end")
    recorder.close()
    store = open_journal(mesh, journal_backend)
    try:
        seqs = [r.seq for r in store.pages(build_query(order="published", limit=10_000))]
        position = store.position()
    finally:
        store.close()
    epoch = recorder.received[0].epoch
    assert seqs == [p.seq for p in recorder.received] and position == (epoch, seqs[-1])
    assert "duplicates, 0 lost" in mesh.log("journal") and "stopping before" not in mesh.log("journal")
    assert f"stopping: {len(CHANNELS)} workers stopped with it\n" in mesh.log("aggregator")  # and all said done


@pytest.mark.parametrize(  # the count is the reader's, whatever the backend: one of each is enough
    ("sig", "journal_backend"),
    [(signal.SIGTERM, "sqlite"), (signal.SIGKILL, "postgres")],
    ids=["stopped", "killed"],
    indirect=["journal_backend"],
)
def test_what_a_stopped_journal_did_not_read_of_an_ended_epoch_is_counted_as_lost_at_its_next_start(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend, sig: int
) -> None:
    """The journal stops alone (it does not wait: the aggregator is not stopping); the aggregator publishes
    30 more, then stops (or is killed) and restarts: its new ring says where the old epoch ended, and the
    journal counts the 30 it can no longer read instead of passing over them."""
    mesh = journal_mesh(mesh_factory, journal_backend)
    recorder = record_publications(mesh)
    start_journal(mesh, "journal.0")
    mesh.push(_highs(10, 6))  # 50 events
    poll_until(lambda: len(recorder.received) >= 50, 20, what="the first 50")
    epoch = recorder.received[0].epoch
    wait_journaled(mesh, journal_backend, epoch, 50)
    assert mesh.stop("journal.0") == 0
    mesh.push(_highs(10, 4, prefix="L"))  # 30 more while the journal is down
    poll_until(lambda: len(recorder.received) >= 80, 20, what="all 80")
    recorder.close()
    poll_until(lambda: mesh.recorded_end(epoch) == 80, 5, what="the epoch's end on disk")  # then a kill -9
    assert mesh.stop("aggregator", sig) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    mesh.spawn("aggregator.2", "-m", "aggregator")
    start_journal(mesh, "journal.1")
    mesh.push(_highs(10, 3, prefix="E"))  # 20 in the new epoch
    journal = poll_until(
        lambda: (j := mesh.read_bus()["journal"]).counters.get("journal.stored", 0) >= 20 and j, 30, what="new epoch"
    )
    assert journal.counters.get("journal.lost") == 30 and journal.counters.get("journal.epoch_changes") == 1
    assert f"LOST 30 publications after seq 50 of epoch {epoch} (it ended at 80)" in mesh.log("journal.1")
    store = open_journal(mesh, journal_backend)
    try:
        rows = list(store.pages(build_query(order="published", limit=1_000)))
    finally:
        store.close()
    assert [(r.epoch == epoch, r.seq) for r in rows] == [(True, s) for s in range(1, 51)] + [
        (False, s) for s in range(1, 21)
    ]
