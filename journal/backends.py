"""Open the configured journal backend: SQLite in the state folder by default, or PostgreSQL by DSN."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from journal.query import EventQuery
from journal.store import SqlStore, StoredEvent
from tickmesh.config import Config

DSN_ENV = "TICKMESH_JOURNAL_DSN"
SQLITE_NAME = "journal.sqlite3"


def sqlite_path(config: Config) -> Path:
    return Path(config.journal.path) if config.journal.path else Path(config.state.dir) / SQLITE_NAME


def describe(config: Config) -> str:
    """Where the journal is, for logs and errors (never the DSN: it may hold a password)."""
    return f"sqlite {sqlite_path(config)}" if config.journal.backend == "sqlite" else "postgres"


def open_store(config: Config, env: Mapping[str, str], *, create: bool) -> SqlStore:
    """The journal store; `create` (the journal process) makes and migrates it, readers need it to exist."""
    if config.journal.backend == "postgres":
        from journal.postgres_store import PostgresStore  # psycopg is only needed by this backend

        store: SqlStore = PostgresStore(env.get(DSN_ENV) or config.journal.dsn)
    else:
        from journal.sqlite_store import SqliteStore

        store = SqliteStore(sqlite_path(config), create=create)
    try:
        if create:
            store.migrate()
        else:
            store.check_schema()
    except BaseException:
        store.close()
        raise
    return store


def query_once(config: Config, env: Mapping[str, str], query: EventQuery) -> list[StoredEvent]:
    """Open the journal, run one query, close it (a reader outside the journal process, e.g. the gRPC API)."""
    store = open_store(config, env, create=False)
    try:
        return store.query(query)
    finally:
        store.close()
