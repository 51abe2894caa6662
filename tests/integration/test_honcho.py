"""The README's run command: `honcho start` shows events of all three channels and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from tests.mesh import honcho_config, kill_tree, poll_until, start_honcho
from tickmesh.config import load_config

SOURCES = re.compile(r"#\d+\s+(tick|ohlcv|fmv)\s")


@pytest.fixture
def honcho(tmp_path: Path):
    """`honcho start` on the repository's Procfile, in an empty working directory; its config (beside it) moves
    only the tcp ports to free ones, so another suite's mesh on this host never meets it."""
    out = open(tmp_path / "honcho.log", "w+b")  # noqa: SIM115 - closed below
    proc = start_honcho(tmp_path, out)
    yield proc, tmp_path / "honcho.log"
    if proc.poll() is None:
        kill_tree(proc.pid)
        proc.wait()
    out.close()


def test_honcho_start_shows_events_of_every_channel_and_ctrl_c_stops_everything(honcho) -> None:
    proc, log = honcho
    started = time.monotonic()

    def every_channel() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"honcho exited early:\n{log.read_text(errors='replace')[-3000:]}")
        return {m.group(1) for m in SOURCES.finditer(log.read_text(errors="replace"))} == {"tick", "ohlcv", "fmv"}

    poll_until(every_channel, timeout=20, interval=0.2, what="events from tick, ohlcv and fmv")
    seen_after = time.monotonic() - started
    state = log.parent / ".tickmesh"  # the router, the workers and control all make folders in it
    assert oct(state.stat().st_mode & 0o777) == "0o700" and (state / "admin.token").stat().st_mode & 0o077 == 0
    tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(tree) >= 12  # honcho, 9 Procfile processes, and the shards under each channel's supervisor
    chosen = configured_ports(log.parent)
    poll_until(lambda: listening_ports(tree) == chosen, 10, what=f"the mesh listening on exactly {sorted(chosen)}")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    stopping = time.monotonic()
    proc.wait(10)
    stopped_in = time.monotonic() - stopping
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]
    assert stopped_in < 5.5, f"took {stopped_in:.1f} s to stop"
    assert not [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    journal = sqlite3.connect(log.parent / ".tickmesh" / "state" / "journal.sqlite3")  # zero config: journaled
    stored = journal.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    journal.close()
    assert stored > 0
    print(f"events of all three channels after {seen_after:.1f} s; stopped in {stopped_in:.1f} s; {stored} journaled")


def configured_ports(folder: Path) -> set[int]:
    """The tcp ports start_honcho's config gave the mesh in `folder`."""
    config = load_config(str(honcho_config(folder)), env={})
    ep = config.endpoints
    addresses = [ep.ingest, ep.sync, ep.publish, ep.replay, ep.grpc, ep.prometheus, config.web.listen]
    return {int(address.rpartition(":")[2]) for address in addresses}


def listening_ports(pids: list[int]) -> set[int]:
    """Every tcp port the processes listen on (a default port left in the mesh would show up here)."""
    ports = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        ports |= {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    return ports
