"""Helpers for journal tests: a mesh with a journal on either backend, a recording subscriber, the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.soak import Recorder
from journal.backends import open_store
from journal.store import SqlStore
from tests.conftest import JournalBackend
from tests.mesh import Mesh, poll_until

QUIET = {"aggregator": {"max_event_age_s": 0}}  # these streams include history: no staleness drop


def journal_mesh(mesh_factory: Callable[..., Mesh], backend: JournalBackend, **settings: Any) -> Mesh:
    """A running mesh whose config has the backend's [journal] table (and DSN in the environment)."""
    merged: dict[str, dict[str, Any]] = {**QUIET, "journal": dict(backend.settings)}
    for section, values in settings.items():
        merged.setdefault(section, {}).update(values)
    mesh = mesh_factory(merged)
    mesh.env.update(backend.env)
    return mesh.start()


def start_journal(mesh: Mesh, name: str, *args: str) -> None:
    """Spawn `python -m journal` as `name` and wait until it reports on the bus."""
    before = mesh.read_bus().get("journal")
    mesh.spawn(name, "-m", "journal", *args)
    after = before.time_ns if before else 0
    mesh.wait_reporting(["journal"], after_ns=after)


def open_journal(mesh: Mesh, backend: JournalBackend) -> SqlStore:
    return open_store(mesh.config, backend.env, create=False)


def wait_journaled(mesh: Mesh, backend: JournalBackend, epoch: int, seq: int, timeout: float = 30.0) -> None:
    """Until the journal's committed position reaches (epoch, seq)."""

    def reached() -> bool:
        try:
            store = open_journal(mesh, backend)
        except Exception:  # not created yet
            return False
        try:
            return (store.position() or (0, 0)) >= (epoch, seq)
        finally:
            store.close()

    poll_until(reached, timeout, interval=0.1, what=f"the journal to reach seq {seq}")


def record_publications(mesh: Mesh) -> Recorder:
    """A subscriber reading the mesh's publish stream in its own thread for the whole test."""
    return Recorder(lambda ctx: mesh.subscriber(ctx=ctx))
