"""tickmesh-journal: append every published event to the journal in batches, off the publishing path."""

from __future__ import annotations

import logging
import os
import sys
import time

import msgspec
import zmq

from journal.backends import describe
from journal.reader import Reader
from journal.store import SqlStore, StoreError
from journal.writer import Batch, Writer
from tickmesh import sched
from tickmesh.bus import Reporter
from tickmesh.config import Config, JournalConfig, with_endpoints
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, mesh_parser, serve, start

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 5.0  # stats (rows, bytes, oldest) and one retention pass this often
REOPEN_S = 1.0  # a store that failed is opened again after this
TRIM_CHUNK = 10_000  # rows deleted per retention pass: deletes never stall the writer for long
DAY_NS = 86_400 * 1_000_000_000
SILENT_HEARTBEATS = 3  # the aggregator's heartbeats missed before the journal is not ready
MAX_PENDING_BATCHES = 4  # received rows kept while the writer is busy, in batches; then receiving waits for it
STOPPING_GRACE_S = 0.5  # at stop: how long to wait for the aggregator to say it is stopping too
WRITE_MARGIN_S = 2.0  # at stop: following the aggregator ends this long before the stop grace: room for a
# last ring fill (1 s at most) and the commit


class Journal:
    """Reads the publish stream (Reader) while the Writer thread commits batches and positions; reports metrics."""

    def __init__(self, config: Config, ctx: zmq.Context, stop: StopFlag, env: dict[str, str]) -> None:  # type: ignore[type-arg]
        self.config, self.stop, self.env = config, stop, env
        self.jc: JournalConfig = config.journal
        self.metrics = Metrics()
        self.bus = Reporter(ctx, config, process="journal", role="journal", metrics=self.metrics)
        self.reader = Reader(ctx, config.endpoints.publish, config.endpoints.replay, self.metrics)
        self.writer = Writer(self.jc.run)
        self.open = False
        self.written: tuple[int, int] | None = None  # the run's position last committed
        self.rows = 0  # rows in the store: counted at open, then kept (other runs' journals may add theirs)
        self.next_open = 0.0
        self.next_housekeeping = 0.0
        self.oldest_pending = 0.0
        self.rate_mark = (time.monotonic(), 0)

    def run(self) -> int:
        log.info("journaling %s into %s%s", self.config.endpoints.publish, describe(self.config),
                 f" as run {self.jc.run!r}" if self.jc.run else "")  # fmt: skip
        while not self.stop:
            if not self.open:
                self._open()
            if not self.open:
                time.sleep(0.1)
            else:
                self._turn()
            self.stop.health.ready(self._not_ready())
            self.metrics.gauges["journal.lag"] = float(self.reader.lag(self.written))
            self.bus.report()
        self._follow_to_end()
        if self.open:
            self._settle(wait=True)
            if self.open and self.reader.pending:
                self._submit()
                self._settle(wait=True)
        self.close()
        return 0

    def _follow_to_end(self) -> None:
        """Stopping with the aggregator (a whole-mesh stop): keep journaling what it publishes while the workers
        flush, up to its final heartbeat. Alone (it does not say it is stopping within STOPPING_GRACE_S): stop.
        What is still unread at the stop budget is counted as lost at the next start (the new epoch's ring
        says where this one ended)."""
        started = time.monotonic()
        end = started + self.config.process.stop_budget(WRITE_MARGIN_S)
        while self.open and not self.reader.ended() and time.monotonic() < end:
            if not self.reader.stopping and time.monotonic() >= started + STOPPING_GRACE_S:
                return
            self._turn()
        if self.reader.stopping and not self.reader.ended():
            log.warning("stopping before the aggregator's last publication (read up to seq %d of epoch %d): the rest "
                        "is counted as lost at the next start", self.reader.last, self.reader.epoch)  # fmt: skip

    def _not_ready(self) -> str:
        """Why /readyz fails: the store is not open, or nothing came from the aggregator (a publication or
        its heartbeat, each heartbeat_s) for SILENT_HEARTBEATS of them: gone, or refusing our CURVE key."""
        if not self.open:
            return "the journal store is not open"
        if not self.reader.heard:
            return "nothing heard from the aggregator yet (no publication or heartbeat)"
        if time.monotonic() - self.reader.heard > SILENT_HEARTBEATS * self.config.aggregator.heartbeat_s:
            return f"the aggregator not heard (no publication or heartbeat) for {SILENT_HEARTBEATS} heartbeats"
        return ""

    def _turn(self) -> None:
        """Receive; collect a finished write; hand the writer what is due; housekeeping when it is idle."""
        self.reader.poll(self._timeout_ms())
        pending = self.reader.pending
        if pending and not self.oldest_pending:
            self.oldest_pending = time.monotonic()
        self._settle(wait=len(pending) >= MAX_PENDING_BATCHES * self.jc.batch_size)  # bounded: wait for the writer
        if self.open and not self.writer.busy and self._due():
            self._submit()
        if self.open and not self.writer.busy:
            self._housekeeping()

    def _timeout_ms(self) -> int:
        if self.writer.busy:
            return 1  # look again soon: the writer may be free for the next batch
        if not self.reader.pending:
            return 100
        return max(0, int((self.oldest_pending + self.jc.flush_ms / 1_000 - time.monotonic()) * 1_000))

    def _due(self) -> bool:
        pending = self.reader.pending
        flush_at = self.oldest_pending + self.jc.flush_ms / 1_000
        return bool(pending) and (len(pending) >= self.jc.batch_size or time.monotonic() >= flush_at)

    def _open(self) -> None:
        if time.monotonic() < self.next_open:
            return
        try:
            self.written, self.rows, backend = self.writer.open(self.config, self.env)
        except (StoreError, OSError) as exc:
            self._failed(f"cannot open the journal: {exc}")
            return
        except Exception as exc:  # a database error while migrating or reading the position
            self._failed(f"cannot open the journal: {exc!r}")
            return
        self.open = True
        self.reader.resume(self.written)
        log.info("journal open (%s); resuming after %s", backend, self.written or "nothing (new journal)")

    def _failed(self, message: str) -> None:
        self.metrics.count("journal.store_errors")
        log.error("%s; retrying in %g s", message, REOPEN_S)
        try:
            self.writer.close_store()
        except Exception:  # closing a broken connection may fail too; it is gone either way
            log.debug("closing the failed store", exc_info=True)
        self.open, self.next_open = False, time.monotonic() + REOPEN_S

    def _submit(self) -> None:
        """Everything pending, as transactions of batch_size rows, each with the position of its last row."""
        pending, size = self.reader.pending, self.jc.batch_size
        position = (self.reader.epoch, self.reader.last)  # may be past the last entry: an invalid event's seq
        now = time.time_ns()
        tail = (now, self.jc.run)
        batches = []
        for start_at in range(0, len(pending), size):
            chunk = pending[start_at : start_at + size]
            through = position if start_at + size >= len(pending) else (chunk[-1][7], chunk[-1][8])
            batches.append(Batch([(*entry, *tail) for entry in chunk], through))
        self.writer.submit(batches)
        self.reader.pending = []
        self.oldest_pending = 0.0

    def _settle(self, wait: bool) -> None:
        done, error = self.writer.settle(wait)
        for batch in done:
            self._count(len(batch.rows), batch.inserted)
            self.written = batch.position
        if error is not None:  # what is not committed is read again from the ring
            self._failed(f"journal write failed: {error!r}")
            self.reader.resume(self.written)

    def _count(self, rows: int, inserted: int) -> None:
        self.metrics.count("journal.batches")
        self.metrics.count("journal.stored", inserted)
        self.rows += inserted
        self.metrics.count("journal.duplicates", rows - inserted)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self.next_housekeeping:
            return
        self.next_housekeeping = now + HOUSEKEEPING_S
        try:
            trimmed = self.writer.call(self._retain)
            self.rows -= trimmed
            stats = self.writer.call(lambda store: store.stats(rows=self.rows))
        except Exception as exc:
            self._failed(f"journal housekeeping failed: {exc!r}")
            self.reader.resume(self.written)
            return
        if trimmed:
            self.metrics.count("journal.trimmed", trimmed)
            self.next_housekeeping = now  # more may be due: another pass next turn
        gauges = self.metrics.gauges
        gauges.update({"journal.rows": float(stats.rows), "journal.bytes": float(stats.bytes),
                       "journal.oldest_event_ns": float(stats.oldest_time_ns)})  # fmt: skip
        then, stored_then = self.rate_mark
        stored = self.metrics.counters["journal.stored"]
        gauges["journal.write_rate"] = (stored - stored_then) / max(1e-3, now - then)
        self.rate_mark = (now, stored)

    def _retain(self, store: SqlStore) -> int:
        if not self.jc.retention_days and not self.jc.max_rows:
            return 0
        cutoff = time.time_ns() - int(self.jc.retention_days * DAY_NS) if self.jc.retention_days else None
        return store.trim(cutoff, self.jc.max_rows or None, TRIM_CHUNK)

    def close(self) -> None:
        counters = self.metrics.counters
        log.info("stopping: %d rows stored in %d transactions, %d duplicates, %d lost", counters["journal.stored"],
                 counters["journal.batches"], counters["journal.duplicates"], counters["journal.lost"])  # fmt: skip
        self.bus.report(force=True)
        if self.open:
            self.writer.close_store()
        self.writer.shutdown()
        self.reader.close()
        self.bus.close()


def main(argv: list[str] | None = None) -> int:
    p = mesh_parser("tickmesh-journal", "Keep every published event in the journal (docs/journal.md).")
    p.add_argument("--publish", help="aggregator PUB endpoint (default from config)")
    p.add_argument("--replay", help="aggregator replay endpoint (default from config)")
    p.add_argument("--run", help="tag every event stored with this run name (default: journal.run)")
    args = p.parse_args(argv)
    config = start(args, "journal")
    if config is None:
        return 2
    config = with_endpoints(config, publish=args.publish, replay=args.replay)
    if args.run is not None:
        try:
            journal = msgspec.convert({**msgspec.to_builtins(config.journal), "run": args.run}, JournalConfig)
        except msgspec.ValidationError as exc:
            print(f"journal: --run: {exc}", file=sys.stderr)
            return 2
        config = msgspec.structs.replace(config, journal=journal)
    env = dict(os.environ)
    sched.background()  # never on the latency path: starved, it lags (journal.lag) and catches up from the ring
    return serve(config, "journal", lambda ctx, stop: Journal(config, ctx, stop, env).run(), args.health)
