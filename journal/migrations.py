"""The journal's schema, per backend, as numbered migrations; `schema_version` records what is applied."""

from __future__ import annotations

# An event id is stored once per run (UNIQUE (run, id) also indexes a run's rows): a re-delivered event is
# skipped, while two back-test runs over the same data keep their own rows. The other indexes serve the
# queries: ticker or kind over a time range, a time range alone, a publication range (and the --since seam).
_INDEXES = [
    "CREATE INDEX events_ticker_time ON events (ticker, time)",
    "CREATE INDEX events_kind_time ON events (kind, time)",
    "CREATE INDEX events_time ON events (time)",
    "CREATE INDEX events_epoch_seq ON events (epoch, seq)",
]


def _positions_per_run(bigint: str) -> list[str]:
    """2: a position per run, so journals of several runs (a live mesh, back-tests) share one store. The one
    position kept so far belongs to the run of the newest row (a journal wrote only its own run)."""
    return [
        f"""CREATE TABLE run_position (
            run TEXT PRIMARY KEY,
            epoch {bigint} NOT NULL,
            seq {bigint} NOT NULL,
            updated_ns {bigint} NOT NULL)""",
        """INSERT INTO run_position (run, epoch, seq, updated_ns)
            SELECT COALESCE((SELECT run FROM events ORDER BY n DESC LIMIT 1), ''), epoch, seq, updated_ns
            FROM journal_position""",
        "DROP TABLE journal_position",
    ]


SQLITE: list[list[str]] = [
    [  # 1: events, the journal's position, indexes
        """CREATE TABLE events (
            n INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            ticker TEXT NOT NULL,
            source TEXT NOT NULL,
            priority INTEGER NOT NULL,
            time INTEGER NOT NULL,
            price REAL NOT NULL,
            epoch INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            published_ns INTEGER NOT NULL,
            stored_ns INTEGER NOT NULL,
            run TEXT NOT NULL DEFAULT '',
            payload BLOB NOT NULL,
            UNIQUE (run, id))""",
        """CREATE TABLE journal_position (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            epoch INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL)""",
        *_INDEXES,
    ],
    _positions_per_run("INTEGER"),
]

POSTGRES: list[list[str]] = [
    [
        """CREATE TABLE events (
            n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            ticker TEXT NOT NULL,
            source TEXT NOT NULL,
            priority INTEGER NOT NULL,
            time BIGINT NOT NULL,
            price DOUBLE PRECISION NOT NULL,
            epoch BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            published_ns BIGINT NOT NULL,
            stored_ns BIGINT NOT NULL,
            run TEXT NOT NULL DEFAULT '',
            payload BYTEA NOT NULL,
            UNIQUE (run, id))""",
        """CREATE TABLE journal_position (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            epoch BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            updated_ns BIGINT NOT NULL)""",
        *_INDEXES,
    ],
    _positions_per_run("BIGINT"),
]

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_ns BIGINT NOT NULL)"
