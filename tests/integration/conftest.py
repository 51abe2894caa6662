"""Fixtures for tests that run real mesh processes on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.mesh import Mesh

FAST = {"aggregator": {"heartbeat_s": 0.2}, "control": {"status_interval_s": 0.2}}


@pytest.fixture
def mesh_factory() -> Iterator[Callable[..., Mesh]]:
    """Make meshes with extra settings (merged over fast heartbeats); all are stopped at teardown."""
    made: list[Mesh] = []

    def make(settings: dict[str, Any] | None = None) -> Mesh:
        merged: dict[str, Any] = {k: dict(v) for k, v in FAST.items()}
        for section, values in (settings or {}).items():
            merged.setdefault(section, {}).update(values)
        mesh = Mesh(merged)
        made.append(mesh)
        return mesh

    yield make
    for mesh in made:
        for name in mesh.procs:  # shown by pytest only when the test failed
            print(f"----- {name} log -----\n{mesh.log(name)[-4000:]}")
        mesh.close()


@pytest.fixture
def mesh(mesh_factory: Callable[..., Mesh]) -> Mesh:
    """A running mesh with default channels, one shard each."""
    return mesh_factory().start()
