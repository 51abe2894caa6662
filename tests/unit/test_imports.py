"""The mesh's processes load only what they use: they run without an event loop, so not asyncio or
ssl (about 6 MB of RSS each), and their version is a constant, so not importlib.metadata (1.3 MB)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each process's main module, as its console script or Procfile line starts it.
SYNC_PROCESSES = ["router.app", "workers.app", "workers.shard", "aggregator.app", "journal.app", "subscriber.app"]


UNUSED = ("asyncio", "ssl", "http.server", "importlib.metadata")


@pytest.mark.parametrize("module", SYNC_PROCESSES)
def test_a_process_without_an_event_loop_loads_neither_asyncio_nor_ssl_nor_package_metadata(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {UNUSED!r} if m in sys.modules))"
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


def test_the_version_every_process_reports_is_the_installed_package_s() -> None:
    """`tickmesh.__version__` is the one place the version is set; the package metadata is built from it."""
    from importlib.metadata import version

    import tickmesh
    from tickmesh.bus import SOFTWARE

    assert SOFTWARE == tickmesh.__version__ == version("tickmesh")
