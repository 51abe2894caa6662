"""The PostgreSQL backend (psycopg 3): each batch COPYed into a temporary table, then merged, in one transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import psycopg

from journal.migrations import POSTGRES
from journal.store import INSERT_COLUMNS, Row, SqlStore, StoreError

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
        self._incoming = False  # the temporary table exists in this session

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return self.conn.transaction()  # type: ignore[no-any-return]

    def insert_rows(self, rows: Sequence[Row]) -> int:
        """COPY into a session-private table, then one INSERT … SELECT that skips (run, id) already stored.

        COPY moves rows several times faster than executemany, but cannot skip conflicts itself.
        """
        columns = ", ".join(INSERT_COLUMNS)
        with self.conn.cursor() as cursor:
            if not self._incoming:
                cursor.execute(
                    f"CREATE TEMP TABLE incoming ON COMMIT DELETE ROWS AS SELECT {columns} FROM events WITH NO DATA"
                )
                self._incoming = True
            with cursor.copy(f"COPY incoming ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"INSERT INTO events ({columns}) SELECT {columns} FROM incoming ON CONFLICT (run, id) DO NOTHING"
            )
            return max(0, cursor.rowcount)

    def size_bytes(self) -> int:
        row = self.conn.execute("SELECT pg_total_relation_size('events')").fetchone()
        return int(row[0]) if row else 0

    def has_table(self, name: str) -> bool:
        return bool(self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0])
