"""Restart is a normal event: a stream split across any restart yields exactly the events of an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import zmq

from tests.mesh import Mesh, collect, drain, kill_tree, poll_until, start_honcho
from tickmesh.config import CHANNELS, OhlcvChannel, TickChannel
from tickmesh.producer import FlushTimeout
from tickmesh.schema import Bar, EventBatch, High, Record, Trade, encoder
from workers import tick_rows
from workers.ohlcv_rules import OhlcvDetector
from workers.tick_rules import TickDetector

S = 1_000_000_000
WINDOW = 2_000  # router.window: each half of the stream holds more records than this
TICKERS = ("AA", "BB", "CC", "DD")


def market(now_ns: int) -> list[Record]:
    """A deterministic stream three hours old: trades swinging to new highs and lows, and bars."""
    start = now_ns - 3 * 3_600 * S
    records: list[Record] = []
    for i in range(1_500):
        for k, ticker in enumerate(TICKERS):
            swing = ((i * (k + 3)) % 97 - 48) / 10 + i / 50
            records.append(Trade(ticker, 100.0 + k * 10 + swing, 100.0 + i % 7, start + i * S // 2 + k, 1, (), i))
        if i % 10 == 0:
            close = 50.0 * (1 + ((i * 7) % 13 - 6) / 100)
            bar_end = start + (i // 10 + 1) * 60 * S
            records.append(
                Bar("BARS", 50.0, max(50.0, close), min(50.0, close), close, 1_000.0 + i, bar_end - 60 * S, bar_end)
            )
    return records


def expected_ids(records: list[Record]) -> Counter[str]:
    """The ids an uninterrupted run publishes: the detectors over the whole stream, in order."""
    tick, ohlcv = TickDetector(TickChannel()), OhlcvDetector(OhlcvChannel())
    ids: Counter[str] = Counter()
    for n, record in enumerate(records):
        detector = tick if isinstance(record, Trade) else ohlcv
        for event in detector.process(record, n, 0, 0):
            ids[event.id] += 1
    return ids


def drained(mesh: Mesh, since_ns: int) -> bool:
    """The router reported, after `since_ns`, that it holds nothing: every record it routed (and a
    flush returns only once all were routed) is delivered and checkpointed, and nothing waits."""
    status = mesh.read_bus().get("router")
    return (
        status is not None
        and status.time_ns > since_ns
        and all(
            status.gauges.get(f"{ch}.unacked") == 0 and status.gauges.get(f"{ch}.queue_depth") == 0 for ch in CHANNELS
        )
    )


def kill_all(mesh: Mesh) -> None:
    """kill -9 of every mesh process, the shards under each supervisor included."""
    pids = [p.pid for p in mesh.procs.values() if p.poll() is None]
    pids += [s.pid for name, s in mesh.read_bus().items() if name.startswith("worker.")]
    for pid in pids:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
    for proc in mesh.procs.values():
        proc.wait(10)


def restart(mesh: Mesh, how: str) -> None:
    # a kill -9 of the aggregator may publish its last 50 ms again (docs/state.md): not what this test checks
    if how in ("whole mesh, kill -9", "aggregator"):
        poll_until(mesh.remembered, 5, what="the dedup memory written")
    if how == "whole mesh, SIGTERM":
        for name in list(mesh.procs):
            assert mesh.stop(name) == 0, mesh.log(name)
    elif how == "whole mesh, kill -9":
        kill_all(mesh)
    elif how in ("router", "aggregator"):
        mesh.stop(how, signal.SIGKILL)
        mesh.spawn(how, "-m", how)
    else:  # a worker shard, kill -9: its supervisor starts a new instance
        os.kill(mesh.pid(how), signal.SIGKILL)
    if how.startswith("whole"):
        mesh.statuses.clear()
        mesh.start(with_bus=False)
    mesh.wait_reporting(mesh.process_names(), after_ns=time.time_ns(), timeout=20)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how", ["whole mesh, SIGTERM", "whole mesh, kill -9", "worker.tick.0", "worker.ohlcv.0", "aggregator", "router"]
)
def test_a_stream_split_across_a_restart_yields_exactly_the_uninterrupted_events(
    mesh_factory: Callable[..., Mesh], how: str
) -> None:
    mesh = mesh_factory({"router": {"window": WINDOW}, "state": {"checkpoint_s": 0.2}}).start()
    records = market(time.time_ns())
    half = len(records) // 2
    sub = mesh.subscriber()
    mesh.push(records[:half])
    pushed = time.time_ns()
    poll_until(lambda: drained(mesh, pushed), 30, what="the first half delivered and checkpointed")
    restart(mesh, how)
    sub2 = mesh.subscriber()  # (the first one stays: across an aggregator restart it sees a new epoch)
    mesh.push(records[half:])
    pushed = time.time_ns()
    poll_until(lambda: drained(mesh, pushed), 30, what="the second half delivered and checkpointed")
    want = expected_ids(records)
    published: Counter[str] = Counter()
    for subscriber in (sub, sub2):
        while (p := subscriber.recv(timeout_ms=300)) is not None:
            if subscriber is sub or p.event.id not in published:
                published[p.event.id] += 1
    assert published == want, (
        f"missing {sorted(set(want) - set(published))[:5]}, extra {sorted(set(published) - set(want))[:5]}, "
        f"twice {[i for i, n in published.items() if n > 1][:5]}"
    )
    assert not any(k.endswith("state_moved_aside") for k in mesh.counters())


def test_the_same_events_arriving_after_an_aggregator_restart_are_not_published_again(mesh: Mesh) -> None:
    sub = mesh.subscriber()
    now = time.time_ns()
    mesh.push([Trade("RE", 10.0 + i, 1, now - 60 * S + i * 2 * S, 1, (), i) for i in range(4)])
    events = [p.event for p in collect(sub, lambda got: len(got) >= 3) + drain(sub)]
    assert len(events) >= 3
    db = mesh.dir / ".tickmesh" / "state" / "aggregator.db"
    poll_until(lambda: db.exists() and b"tick:high:RE" in db.read_bytes() + _wal(db), 5, what="the ids on disk")
    mesh.stop("aggregator", signal.SIGKILL)
    mesh.spawn("aggregator", "-m", "aggregator")
    mesh.wait_reporting(["aggregator"], after_ns=time.time_ns())
    again = mesh.subscriber()
    replayed = EventBatch("worker.tick.0:again", "tick", 0, 1, 0, events)  # a worker resending after a crash
    push = mesh.ctx.socket(zmq.PUSH)
    push.connect(mesh.endpoints.events)
    push.send(encoder.encode(replayed))
    push.close(linger=1_000)
    poll_until(lambda: mesh.counters().get("deduplicated.exact", 0) == len(events), 10, what="the copies dropped")
    assert again.recv(timeout_ms=500) is None


def _wal(db: Path) -> bytes:
    wal = Path(str(db) + "-wal")
    return wal.read_bytes() if wal.exists() else b""


EVENTS = re.compile(r"(\d\d:\d\d:\d\d)\.\d+ #\d+\s+(tick|ohlcv|fmv)\s")  # event time, channel
SPAN_END = "14:31:30"  # every run's market opens at 14:30:00 (on a day of its own): 1.5 event minutes
LATER = "14:32:00"  # an event this late means every event of the span is out (all channels publish within 3 s)


def _honcho_run(folder: Path) -> tuple[Counter[str], str]:
    """`honcho start` in `folder` until an event of LATER, then Ctrl-C: events per channel of the first
    SPAN_END of event time (the same span of the same deterministic market in every run), and the output."""
    log = folder / "honcho.log"

    def event_times() -> list[str]:
        return [m.group(1) for m in EVENTS.finditer(log.read_text(errors="replace"))]

    with open(log, "wb") as out:
        proc = start_honcho(folder, out)
        try:
            poll_until(lambda: any(t >= LATER for t in event_times()), 60, 0.2, what=f"an event at {LATER}")
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(15)
        finally:
            if proc.poll() is None:
                kill_tree(proc.pid)
                proc.wait()
    text = log.read_text(errors="replace")
    return Counter(m.group(2) for m in EVENTS.finditer(text) if m.group(1) < SPAN_END), text


@pytest.mark.slow
def test_a_second_honcho_start_in_the_same_folder_behaves_like_the_first(tmp_path: Path) -> None:
    first, out1 = _honcho_run(tmp_path)  # 2 event minutes are 12 s at the sim's 10x
    second, out2 = _honcho_run(tmp_path)
    for text in (out1, out2):
        assert "Traceback" not in text and "flush failed" not in text, text[-3000:]
    for channel in ("tick", "ohlcv", "fmv"):
        assert first[channel] > 0
        assert abs(second[channel] - first[channel]) <= 0.2 * first[channel], (channel, first, second)


def test_an_unreadable_or_older_shard_store_means_a_fresh_start_and_a_count_never_a_loop(
    mesh_factory: Callable[..., Mesh],
) -> None:
    mesh = mesh_factory()
    state = mesh.dir / ".tickmesh" / "state"
    state.mkdir(parents=True)
    (state / "tick-0.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4_000)  # corrupted
    with sqlite3.connect(state / "ohlcv-0.db") as db:  # written by an older version
        db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v)")
        db.execute("INSERT INTO meta VALUES ('schema', 0)")
    mesh.start()
    sub = mesh.subscriber()
    now = time.time_ns()
    mesh.push([Trade("FRESH", 10.0 + i, 1, now + i * 2 * S) for i in range(3)])
    assert [p.event.price for p in collect(sub, lambda got: len(got) >= 2)] == [11.0, 12.0]
    counters = mesh.counters()
    assert (counters.get("tick.state_moved_aside"), counters.get("ohlcv.state_moved_aside")) == (1, 1)
    assert not any(k.endswith((".crashes", ".restarts")) for k in counters)
    assert len(list(state.glob("*.db.unreadable-*"))) == 2


V4_STORE = Path(__file__).with_name("data") / "tick-0.v4.db"  # a tick shard's store, written by the version-4 code
V5_STORE = V4_STORE.with_name("tick-0.v5.db")  # the same, restored and checkpointed by the version-5 code (7b2e11b)
V4_T0 = 1_767_225_600 * S + 15 * 3_600 * S  # its trades: UPG every 5 s from here (40), 27 highs up to 70.25


@pytest.mark.parametrize("old_store", [V4_STORE, V5_STORE], ids=["v4", "v5"])
def test_a_tick_store_of_an_older_version_keeps_every_session_after_the_upgrade(
    mesh_factory: Callable[..., Mesh], old_store: Path
) -> None:
    """The upgrade reads the old rows (no store moved aside), the sessions go on where they were, and
    the next checkpoint writes them in the current version."""
    mesh = mesh_factory()
    state = mesh.dir / ".tickmesh" / "state"
    state.mkdir(parents=True)
    store = state / "tick-0.db"
    store.write_bytes(old_store.read_bytes())
    mesh.start()
    sub = mesh.subscriber()
    mesh.push([Trade("UPG", 75.0, 100, V4_T0 + 200 * S)])
    highs = [p.event for p in collect(sub, lambda got: any(isinstance(p.event, High) for p in got))]
    high = next(e for e in highs if isinstance(e, High))
    assert (high.previous, high.count) == (70.25, 28)  # the 28th high of the session, above the 27th
    assert "tick.state_moved_aside" not in mesh.counters()

    def header_version() -> int:
        with sqlite3.connect(store) as db:
            (header,) = db.execute("SELECT v FROM meta WHERE k = 'header'").fetchone()
        return int(tick_rows.read_header(header).v)

    poll_until(lambda: header_version() == tick_rows.VERSION, 10, what="the store rewritten in this version")


def test_a_router_stopped_mid_stream_routes_what_it_accepted_or_fails_the_flush(mesh: Mesh) -> None:
    now = time.time_ns() - 3_600 * S
    trades = [Trade(f"M{i % 50}", 10.0 + (i % 7), 1, now + i * 1_000_000) for i in range(30_000)]
    producer = mesh.producer()
    for i in range(0, len(trades), 100):
        producer.send(trades[i : i + 100])
    mesh.procs["router"].send_signal(signal.SIGTERM)
    try:
        producer.flush(timeout_s=10)
    except FlushTimeout as exc:  # refused or unanswered: the producer knows, nothing is silent
        assert mesh.procs["router"].wait(10) == 0
        print(f"flush failed as it should when records were not routed: {exc}")
        return
    assert mesh.procs["router"].wait(10) == 0
    # the flush succeeded: every record sent before it was routed, and the worker processes all of them
    poll_until(
        lambda: (
            mesh.read_bus().get("worker.tick.0")
            and mesh.statuses["worker.tick.0"].counters.get("tick.processed") == len(trades)
        ),
        20,
        what="every trade processed",
    )
