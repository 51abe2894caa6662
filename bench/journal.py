"""The journal part: events/s the real journal process sustains on each backend, fed flat out by a stand-in
aggregator (XPUB + replay ring), and the raw batched write rate of each store."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import zmq

from aggregator.ring import ReplayRing
from bench import stages
from bench.drive import LoadProc, SinkProc, hold, summarize
from bench.procs import Stage, StageError, cpu_seconds, poll_until
from bench.workload import Mix
from journal.backends import DSN_ENV, open_store
from journal.query import build_query
from journal.store import SqlStore, row_of
from tickmesh.config import Config, JournalConfig, load_config, to_toml
from tickmesh.schema import HEARTBEAT_TOPIC, Heartbeat, High, Publication, encoder, replay_request_decoder, topic_of
from tickmesh.sockets import make_socket

log = logging.getLogger("bench")
S = 1_000_000_000
BATCH = JournalConfig().batch_size  # rows per transaction, as the journal writes them at most


def publications(n: int, epoch: int) -> list[Publication]:
    """`n` distinct new-high events over 1,000 tickers, as the aggregator would publish them."""
    now = time.time_ns()
    out = []
    for seq in range(1, n + 1):
        ticker, at = f"J{seq % 1_000:04d}", now + seq * 1_000
        event = High(f"tick:high:{ticker}:{at}", ticker, "tick", 1, at, 100.0 + seq % 97, seq, at, at,
                     previous=99.0, count=seq)  # fmt: skip
        out.append(Publication(seq, epoch, at, event))
    return out


def journal_part(events: int) -> dict[str, Any]:
    """Per backend: the store's batched write rate in-process, and the journal process end to end."""
    out: dict[str, Any] = {"events": events, "batch": BATCH}
    for backend in ("sqlite", "postgres"):
        if backend == "postgres" and not os.environ.get(DSN_ENV):
            out[backend] = {"skipped": f"set {DSN_ENV} to a PostgreSQL database the bench may fill"}
            continue
        folder = Path(tempfile.mkdtemp(prefix="tm-bj-"))
        try:
            settings = {"backend": backend, "path": str(folder / "journal.sqlite3")}
            out[backend] = {"store_rows_per_s": store_rate(folder, settings, events)}
            out[backend].update(process_rate(folder, settings, events))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        log.info("journal %s: %s", backend, out[backend])
    return out


# The journal's cost is measured inside one mesh, in windows that alternate between the journal running
# beside it and the journal stopped (SIGSTOP: still there, using no CPU), in the order running, stopped,
# stopped, running, …: the host's drift and the mesh's own slow moments (checkpoints, a busy neighbour)
# fall on both sides alike, which separate runs of a few seconds each could not promise. Conservative:
# a running window after a stopped one also catches up what the journal missed while stopped.
COST_WINDOW_S = 5.0  # at most: a stopped journal must find what it missed still in the replay ring


def mesh_cost(
    mix: Mix, rate: int, hold_s: float, settle_s: float, settings: dict[str, Any], windows: int = 16
) -> dict[str, Any]:
    """The mesh's tick p99 at `rate` records/s with the journal (SQLite) running and stopped beside it, in
    `windows` alternating windows (a multiple of 4); the cost compares the mean p99 of each side."""
    window_s = min(hold_s, COST_WINDOW_S)
    order = [i % 4 in (0, 3) for i in range(windows)]  # running, stopped, stopped, running, …
    out: dict[str, Any] = {"rate": rate, "window_s": window_s, "with_journal_p99_us": [], "without_journal_p99_us": []}
    system = stages.start("mesh_journal", settings)
    pid = system.stage.procs["journal"].pid
    try:
        sink = SinkProc(system.stage)
        sink.wait_ready()
        load = LoadProc(system.stage, "load", mix)
        load.rate(rate)
        hold(system.stage, settle_s)
        started = cpu_seconds({"journal": pid}).get("journal", 0.0)
        for running in order:
            os.kill(pid, signal.SIGCONT if running else signal.SIGSTOP)
            sink.take()
            hold(system.stage, window_s)
            p99 = summarize(sink.take().latency.get("tick")).get("p99_us")
            out["with_journal_p99_us" if running else "without_journal_p99_us"].append(p99)
        used = cpu_seconds({"journal": pid}).get("journal", 0.0) - started  # stopped, it uses none
        os.kill(pid, signal.SIGCONT)
        load.rate(0)
        out["journal"] = _caught_up(system.stage)
        out["journal"]["cpu_percent_running"] = round(100 * used / (windows / 2 * window_s), 1)
    finally:
        os.kill(pid, signal.SIGCONT)  # a stopped process would not see the stage's SIGTERM
        system.close()
    off, on = (_mean(out[f"{key}_p99_us"]) for key in ("without_journal", "with_journal"))
    if off and on:
        out["p99_cost_pct"] = round(100 * (on - off) / off, 1)
    log.info("journal cost at %s/s: %s", f"{rate:,}", out)
    return out


def _caught_up(stage: Stage) -> dict[str, Any]:
    """The journal's counters once it has stored everything published (or 30 s have passed)."""
    with contextlib.suppress(StageError):  # then the figures say how far behind it still is
        poll_until(lambda: stage.fresh(["journal"])["journal"].gauges.get("journal.lag") == 0, 30, "the journal")
    journal = stage.statuses["journal"]
    counters, gauges = journal.counters, journal.gauges
    return {"stored": counters.get("journal.stored", 0), "lost": counters.get("journal.lost", 0),
            "lag": gauges.get("journal.lag")}  # fmt: skip


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def _config(folder: Path, settings: dict[str, Any]) -> Config:
    return Config(journal=msgspec.convert(settings, JournalConfig))


def _empty(store: SqlStore) -> None:
    with store.transaction():
        store.execute("DELETE FROM events")
        store.execute("DELETE FROM run_position")


def store_rate(folder: Path, settings: dict[str, Any], n: int) -> float:
    """Rows/s of SqlStore.write in transactions of BATCH rows, on an empty store."""
    store = open_store(_config(folder, settings), os.environ, create=True)
    try:
        _empty(store)
        rows = [row_of(p, "", p.published_ns) for p in publications(n, 1)]
        started = time.perf_counter()
        for i in range(0, n, BATCH):
            store.write(rows[i : i + BATCH], (1, i + BATCH))
        rate = n / (time.perf_counter() - started)
        _empty(store)
        return round(rate)
    finally:
        store.close()


def process_rate(folder: Path, settings: dict[str, Any], n: int) -> dict[str, Any]:
    """Publish `n` events flat out to a real `python -m journal`; events/s from first send to all committed."""
    ep = {"publish": f"ipc://{folder}/pub", "replay": f"ipc://{folder}/replay",
          "control_config": f"ipc://{folder}/cc", "control_status": f"ipc://{folder}/cs"}  # fmt: skip
    path = folder / "tickmesh.toml"
    path.write_text(to_toml({"endpoints": ep, "journal": settings}))
    config = load_config(str(path), env={})
    epoch = time.time_ns()
    pubs = publications(n, epoch)
    frames = [(topic_of(p.event), encoder.encode(p)) for p in pubs]
    ctx = zmq.Context()
    pub = make_socket(ctx, zmq.XPUB, bind=ep["publish"], hwm=100_000)
    replay = make_socket(ctx, zmq.ROUTER, bind=ep["replay"], hwm=1_000)
    ring = ReplayRing(epoch, n, 1 << 20)
    with open(folder / "journal.log", "wb") as journal_log:  # the child keeps its own descriptor
        command = [sys.executable, "-m", "journal", "--config", str(path)]
        proc = subprocess.Popen(command, cwd=folder, stderr=journal_log)
    try:
        if not pub.poll(30_000):  # the journal's subscription: it is listening
            raise RuntimeError(f"the journal did not subscribe:\n{(folder / 'journal.log').read_text()[-2000:]}")
        pub.recv()
        store = _open_when_made(config)
        if replay.poll(30_000):  # its first request (a new journal reads what the ring holds), answered at once
            _answer(replay, ring)  # as the aggregator would: unanswered, it would drop the live stream for 1 s
        started = time.perf_counter()
        for i, (topic, payload) in enumerate(frames):
            pub.send(topic, zmq.SNDMORE)
            pub.send(payload)
            ring.append(pubs[i].seq, payload)
            if i % 1_000 == 0:
                _answer(replay, ring)
        sent_s = time.perf_counter() - started
        while (store.position() or (0, 0)) < (epoch, n):
            # as the aggregator does: heartbeats, and replay requests answered as they come (a ring fill
            # waiting for a sampling interval would measure this loop, not the journal)
            pub.send_multipart([HEARTBEAT_TOPIC, encoder.encode(Heartbeat(n, epoch, time.time_ns()))])
            deadline = time.monotonic() + 0.05
            while (left := deadline - time.monotonic()) > 0:
                if replay.poll(max(1, int(left * 1_000))):
                    _answer(replay, ring)
        done_s = time.perf_counter() - started
        stored = sum(1 for _ in store.pages(build_query(limit=10_000)))
        store.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        pub.close(0)
        replay.close(0)
        ctx.term()
    return {"events_per_s": round(n / done_s), "published_per_s": round(n / sent_s), "seconds": round(done_s, 2),
            "stored": stored}  # fmt: skip


def _open_when_made(config: Config) -> SqlStore:
    """The journal's store, once the journal process has created it."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return open_store(config, os.environ, create=False)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling for a file another process creates


def _answer(replay: zmq.Socket, ring: ReplayRing) -> None:  # type: ignore[type-arg]
    while replay.poll(0):
        identity, *_, payload = replay.recv_multipart()
        reply = ring.answer(replay_request_decoder.decode(payload))
        replay.send_multipart([identity, b"", encoder.encode(reply)])
