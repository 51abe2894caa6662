"""The mesh's processes run without an event loop, so they must not load asyncio or ssl (about 6 MB of RSS each)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each process's main module, as its console script or Procfile line starts it.
SYNC_PROCESSES = ["router.app", "workers.app", "workers.shard", "aggregator.app", "journal.app", "subscriber.app"]


@pytest.mark.parametrize("module", SYNC_PROCESSES)
def test_a_process_without_an_event_loop_loads_neither_asyncio_nor_ssl(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('asyncio', 'ssl', 'http.server') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{module} loads {out.strip()}"


def test_control_still_gets_its_asyncio_context() -> None:
    code = (
        "from tickmesh.config import Config; from tickmesh.curve import secure_context; import zmq.asyncio; "
        "ctx = secure_context(Config(), 'control', asyncio=True); "
        "print(isinstance(ctx, zmq.asyncio.Context), type(ctx).__name__); ctx.term()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "AsyncSecureContext"]
