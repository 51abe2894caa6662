"""The PostgreSQL backend (psycopg 3): batched executemany in one transaction per batch."""

from __future__ import annotations

import contextlib

import psycopg

from journal.migrations import POSTGRES
from journal.store import SqlStore, StoreError

CONNECT_TIMEOUT_S = 5


class PostgresStore(SqlStore):
    """A journal in a PostgreSQL database (the DSN names it; the tables live in its search path)."""

    backend = "postgres"
    placeholder = "%s"
    migrations = POSTGRES

    def __init__(self, dsn: str) -> None:
        if not dsn:
            raise StoreError("journal.backend is postgres but no DSN: set TICKMESH_JOURNAL_DSN or journal.dsn")
        try:
            conn = psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the journal database: {str(exc).strip()}") from None
        super().__init__(conn)

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return self.conn.transaction()  # type: ignore[no-any-return]

    def size_bytes(self) -> int:
        row = self.conn.execute("SELECT pg_total_relation_size('events')").fetchone()
        return int(row[0]) if row else 0

    def has_table(self, name: str) -> bool:
        return bool(self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0])
