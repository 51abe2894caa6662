"""Run `tickmesh up` as a user would: an empty directory, a subscriber, then SIGTERM — exit 0, nothing left."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import zmq

from subscriber.client import Subscriber, as_dict
from tests.integration.conftest import FAST
from tests.mesh import collect, free_port, ipc_endpoints, poll_until
from tickmesh.config import CHANNELS, to_toml
from tickmesh.schema import Publication


@contextmanager
def private_config() -> Iterator[tuple[Path, dict[str, str]]]:
    """A config on private ipc endpoints (so it never meets another mesh on this machine), and them."""
    folder = Path(tempfile.mkdtemp(prefix="tm-"))  # ipc paths must be short
    endpoints = ipc_endpoints(str(folder))
    web = {"listen": f"127.0.0.1:{free_port()}"}  # tickmesh-web's page, off the default port too
    (folder / "tickmesh.toml").write_text(to_toml({"endpoints": endpoints, **FAST, "web": web}))
    try:
        yield folder / "tickmesh.toml", endpoints
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def see_events_then_stop(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    endpoints: dict[str, str],
    *,
    sources: frozenset[str] = frozenset(CHANNELS),
    then: str = "",
    sig: int = signal.SIGTERM,
) -> str:
    """Start `command`; see events from `sources` and the line `then`; send `sig`; exit 0, nothing left. Its output."""
    log_path = cwd.parent / f"{cwd.name}.log"  # beside the working directory, which must stay as the mesh left it
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        ctx = zmq.Context()
        sub = Subscriber(endpoints["publish"], replay=endpoints["replay"], ctx=ctx)
        try:

            def all_sources(received: list[Publication]) -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
                return {as_dict(p)["source"] for p in received} >= sources

            collect(sub, all_sources, timeout=40)
            poll_until(lambda: then in log_path.read_text(errors="replace"), 10, what=f"the line {then!r}")
            tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
            assert len(tree) >= 11, tree  # up, 9 Procfile processes, the shards under the supervisors
            proc.send_signal(sig)
            assert proc.wait(15) == 0, log_path.read_text(errors="replace")
            poll_until(lambda: not [p for p in tree if _alive(p)], 5, what=f"every process of {tree} gone")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sub.sub.close(0)
            ctx.term()
        return log_path.read_text(errors="replace")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
