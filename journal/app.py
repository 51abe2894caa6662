"""tickmesh-journal: append every published event to the journal in batches, off the publishing path."""

from __future__ import annotations

import logging
import os
import sys
import time

import msgspec
import zmq

from journal.backends import describe, open_store
from journal.reader import Reader
from journal.store import SqlStore, StoreError, row_of
from tickmesh.bus import BusClient
from tickmesh.config import Config, JournalConfig, with_endpoints
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, mesh_parser, serve, start
from tickmesh.schema import Publication

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 5.0  # stats (rows, bytes, oldest) and one retention pass this often
REOPEN_S = 1.0  # a store that failed is opened again after this
TRIM_CHUNK = 10_000  # rows deleted per retention pass: deletes never stall the writer for long
DAY_NS = 86_400 * 1_000_000_000
# The journal is never on the latency path: below the lowest channel's workers (nice +6), it takes the
# CPU the mesh leaves; when starved it lags (journal.lag) and catches up from the ring.
NICE = 10


class Journal:
    """Reads the publish stream (Reader), writes batches and its position in one transaction, reports metrics."""

    def __init__(self, config: Config, ctx: zmq.Context, stop: StopFlag, env: dict[str, str]) -> None:  # type: ignore[type-arg]
        self.config, self.stop, self.env = config, stop, env
        self.jc: JournalConfig = config.journal
        self.metrics = Metrics()
        self.bus = BusClient(ctx, config, process="journal", role="journal", channels=[], metrics=self.metrics)
        self.reader = Reader(ctx, config.endpoints.publish, config.endpoints.replay, self.metrics)
        self.store: SqlStore | None = None
        self.written: tuple[int, int] | None = None  # the position last committed
        self.rows = 0  # rows in the store: counted once at open, then kept (the journal is the only writer)
        self.next_open = 0.0
        self.next_housekeeping = 0.0
        self.oldest_pending = 0.0
        self.rate_mark = (time.monotonic(), 0)

    def run(self) -> int:
        log.info("journaling %s into %s%s", self.config.endpoints.publish, describe(self.config),
                 f" as run {self.jc.run!r}" if self.jc.run else "")  # fmt: skip
        while not self.stop:
            if self.store is None:
                self._open()
            if self.store is None:
                time.sleep(0.1)
            else:
                self.reader.poll(self._timeout_ms())
                if self.reader.pending and not self.oldest_pending:
                    self.oldest_pending = time.monotonic()
                if self._due():
                    self._write()
                self._housekeeping()
            self.stop.health.ready("" if self.store is not None else "the journal store is not open")
            self.bus.receive(self.config)  # keeps the config SUB drained; the journal has no live settings
            self.metrics.gauges["journal.lag"] = float(self.reader.lag(self.written))
            self.bus.report()
        if self.store is not None and self.reader.pending:
            self._write()
        self.close()
        return 0

    def _timeout_ms(self) -> int:
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
            self.store = open_store(self.config, self.env, create=True)
            self.written = self.store.position()
            self.rows = self.store.stats().rows
        except (StoreError, OSError) as exc:
            self._failed(f"cannot open the journal: {exc}")
            return
        except Exception as exc:  # a database error while migrating or reading the position
            self._failed(f"cannot open the journal: {exc!r}")
            return
        self.reader.resume(self.written)
        log.info("journal open (%s); resuming after %s", self.store.backend, self.written or "nothing (new journal)")

    def _failed(self, message: str) -> None:
        self.metrics.count("journal.store_errors")
        log.error("%s; retrying in %g s", message, REOPEN_S)
        if self.store is not None:
            try:
                self.store.close()
            except Exception:  # closing a broken connection may fail too; it is gone either way
                log.debug("closing the failed store", exc_info=True)
        self.store, self.next_open = None, time.monotonic() + REOPEN_S

    def _write(self) -> None:
        assert self.store is not None
        pending = self.reader.pending
        position = (self.reader.epoch, self.reader.last)
        now = time.time_ns()
        rows = [row_of(p, self.jc.run, now) for p in pending]
        try:
            for start_at in range(0, len(rows), self.jc.batch_size):
                last = start_at + self.jc.batch_size >= len(rows)
                batch_position = position if last else _position_of(pending[start_at + self.jc.batch_size - 1])
                inserted = self.store.write(rows[start_at : start_at + self.jc.batch_size], batch_position)
                self._count(len(rows[start_at : start_at + self.jc.batch_size]), inserted)
                self.written = batch_position
        except Exception as exc:  # the database failed: what is not committed is read again from the ring
            self._failed(f"journal write failed: {exc!r}")
            self.reader.resume(self.written)
            return
        pending.clear()
        self.oldest_pending = 0.0

    def _count(self, rows: int, inserted: int) -> None:
        self.metrics.count("journal.batches")
        self.metrics.count("journal.stored", inserted)
        self.rows += inserted
        self.metrics.count("journal.duplicates", rows - inserted)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self.next_housekeeping or self.store is None:
            return
        self.next_housekeeping = now + HOUSEKEEPING_S
        try:
            trimmed = self._retain(self.store)
            self.rows -= trimmed
            stats = self.store.stats(rows=self.rows)
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
        self.bus.report(force=True)
        if self.store is not None:
            self.store.close()
        self.reader.close()
        self.bus.close()


def _position_of(publication: Publication) -> tuple[int, int]:
    return (publication.epoch, publication.seq)


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
    os.nice(NICE)
    return serve(config, "journal", lambda ctx, stop: Journal(config, ctx, stop, env).run(), args.health)
