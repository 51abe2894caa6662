"""`python -m bench.soak`: the journal's conservation soak — a real mesh on a mixed synthetic market for N
minutes, the journal killed -9 at 1/3 and 2/3 and restarted, then every event a subscriber saw must be in
the journal exactly once (and journal.lost must be 0)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from bench.procs import Stage, StageError, poll_until
from journal.backends import DSN_ENV, SQLITE_NAME, open_store
from journal.query import build_query
from subscriber.client import Subscriber
from tickmesh.config import CHANNELS
from tickmesh.schema import Publication

log = logging.getLogger("bench.soak")
SETTINGS: dict[str, dict[str, Any]] = {
    "aggregator": {"max_event_age_s": 0, "heartbeat_s": 0.2},  # the sim's data time runs ahead of staleness
    "control": {"status_interval_s": 0.2},
}
SETTLE_S = 60.0
LOST = re.compile(r"LOST (\d+) publications")


class Recorder:
    """A subscriber reading in its own thread: every publication it sees, in order (gaps filled from the
    ring, or counted lost). `subscribe` makes the subscriber on the recorder's own context."""

    def __init__(self, subscribe: Callable[[zmq.Context], Subscriber]) -> None:  # type: ignore[type-arg]
        self.ctx = zmq.Context()
        self.sub = subscribe(self.ctx)
        self.received: list[Publication] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            publication = self.sub.recv(timeout_ms=50)
            if publication is not None:
                self.received.append(publication)

    @property
    def last(self) -> tuple[int, int]:
        """(epoch, seq) of the last publication seen, (0, 0) before the first."""
        return (self.received[-1].epoch, self.received[-1].seq) if self.received else (0, 0)

    def close(self) -> int:
        """Stop; the events the subscriber lost (0 unless the ring could not fill a gap)."""
        self.running = False
        self.thread.join()
        self.sub.close()
        self.ctx.term()
        return self.sub.lost


def soak(minutes: float, backend: str, rate: float) -> dict[str, Any]:
    """Run it; the figures and the verdict (`ok`)."""
    duration = minutes * 60
    if backend == "postgres" and not os.environ.get(DSN_ENV):
        raise StageError(f"--backend postgres: set {DSN_ENV} to an empty PostgreSQL database the soak may fill")
    stage = Stage("soak", {**SETTINGS, "journal": {"backend": backend}})
    recorder: Recorder | None = None
    try:
        stage.start_mesh()
        recorder = Recorder(lambda ctx: Subscriber(stage.endpoints.publish, replay=stage.endpoints.replay, ctx=ctx))
        _start_journal(stage, "journal.0")
        started = time.monotonic()
        stage.spawn("feed", "-m", "feeds", "sim", "--rate", str(rate), "--duration", str(duration), "--seed", "15")
        stage.finishes("feed")  # (it may, while a restarted journal is still starting)
        for kill in (1, 2):
            _sleep_until(stage, started + duration * kill / 3)
            name = f"journal.{kill - 1}"
            stage.kill(name)
            log.info("killed %s (-9) at %.0f s; restarting it", name, time.monotonic() - started)
            _start_journal(stage, f"journal.{kill}")
        poll_until(lambda: stage.procs["feed"].poll() is not None, duration + SETTLE_S, "the feed to finish")
        stage.check_alive(["feed"])  # with 0
        last = _settle(stage, recorder)
        seen, lost_by_subscriber = [p.event.id for p in recorder.received], recorder.close()
        recorder = None
        return {"minutes": minutes, "backend": backend, "rate": rate, **_verdict(stage, last, seen, lost_by_subscriber)}
    finally:
        if recorder is not None:
            recorder.close()
        stage.close()


def _start_journal(stage: Stage, name: str) -> None:
    stage.spawn(name, "-m", "journal")
    stage.wait_reporting(["journal"], after_ns=time.time_ns(), timeout=30)


def _sleep_until(stage: Stage, when: float) -> None:
    while time.monotonic() < when:
        stage.check_alive()
        time.sleep(min(1.0, max(0.0, when - time.monotonic())))  # a timer, not a stand-in for a signal


def _settle(stage: Stage, recorder: Recorder) -> tuple[int, int]:
    """Once the router holds nothing and the subscriber has seen what the aggregator published: the last
    (epoch, seq), which the journal must then reach."""
    after = time.time_ns()

    def drained() -> bool:
        router = stage.read_bus().get("router")
        gauges = router.gauges if router is not None and router.time_ns > after else {}
        return bool(gauges) and all(gauges.get(f"{ch}.unacked") == 0 and gauges.get(f"{ch}.queue_depth") == 0
                                    for ch in CHANNELS)  # fmt: skip

    poll_until(drained, SETTLE_S, "every record processed")
    settled = time.time_ns()
    poll_until(lambda: stage.read_bus()["aggregator"].time_ns > settled, 10, "a report from the aggregator")
    published = stage.statuses["aggregator"].counters["published"]
    poll_until(lambda: recorder.last[1] >= published, SETTLE_S, "the subscriber to see everything")
    return recorder.last


def _verdict(stage: Stage, last: tuple[int, int], seen_ids: list[str], lost_by_subscriber: int) -> dict[str, Any]:
    """Every event seen is journaled exactly once, nothing else is, and nothing was lost."""
    env = dict(os.environ)
    config = stage.config
    if config.journal.backend == "sqlite":  # the processes run in the stage's folder: the file is there
        path = str(stage.dir / config.state.dir / SQLITE_NAME)
        config = msgspec.structs.replace(config, journal=msgspec.structs.replace(config.journal, path=path))

    def journaled() -> bool:
        store = open_store(config, env, create=False)
        try:
            return (store.position() or (0, 0)) >= last
        finally:
            store.close()

    poll_until(journaled, SETTLE_S, f"the journal to reach seq {last[1]}")
    status = stage.fresh(["journal"])["journal"]
    store = open_store(config, env, create=False)
    try:
        rows = Counter(row.id for row in store.pages(build_query(order="published", limit=5_000)))
    finally:
        store.close()
    seen = Counter(seen_ids)
    missing, extra = set(seen) - set(rows), set(rows) - set(seen)
    twice = sum(1 for n in rows.values() if n > 1)
    # every instance's losses (the killed ones' counters died with them; each logged what it lost)
    logs = [
        (stage.dir / f"{name}.log").read_text(errors="replace") for name in stage.procs if name.startswith("journal")
    ]
    lost = sum(int(n) for text in logs for n in LOST.findall(text))
    ok = not missing and not extra and not twice and lost == 0 and lost_by_subscriber == 0
    ok = ok and max(seen.values(), default=0) == 1
    return {"published": last[1], "seen": sum(seen.values()),
            "journaled": sum(rows.values()), "missing": len(missing), "extra": len(extra), "stored_twice": twice,
            "journal_lost": lost, "subscriber_lost": lost_by_subscriber, "kills": 2,
            "journal_filled": status.counters.get("journal.filled", 0),
            "journal_duplicates": status.counters.get("journal.duplicates", 0), "ok": ok}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=5.0, help="how long the feed runs (default 5)")
    p.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                   help=f"the journal's backend (postgres: the database in ${DSN_ENV})")  # fmt: skip
    p.add_argument("--rate", type=float, default=5_000, help="records/s the synthetic market sends (default 5000)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        result = soak(args.minutes, args.backend, args.rate)
    except StageError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else " · ".join(f"{k} {v}" for k, v in result.items()))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
