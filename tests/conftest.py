"""Fixtures shared by unit and integration tests: the journal backends (SQLite, and a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.postgres import PostgresCluster, postgres_bin


@dataclass(frozen=True)
class JournalBackend:
    """Settings for one backend: `settings` is the [journal] table, `env` carries the DSN."""

    name: str
    settings: dict[str, object]
    env: dict[str, str]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = postgres_bin()
    if bindir is None:  # CI installs Debian's postgresql (.ci/run); only a bare machine skips
        pytest.skip("PostgreSQL server binaries are absent (apt-get install postgresql)")
    cluster = PostgresCluster(bindir)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def journal_backend(request: pytest.FixtureRequest, tmp_path: Path) -> JournalBackend:
    """Each journal test runs against both backends, each time on an empty store."""
    if request.param == "sqlite":
        return JournalBackend("sqlite", {"backend": "sqlite", "path": str(tmp_path / "journal.sqlite3")}, {})
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return JournalBackend("postgres", {"backend": "postgres"}, {"TICKMESH_JOURNAL_DSN": cluster.new_database()})
