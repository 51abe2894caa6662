"""Supervision an orchestrator can see: the worker supervisor gives up after its restart budget, exit 3."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psutil
import zmq
from zmq.utils.monitor import recv_monitor_message

from tests.mesh import Mesh, poll_until


def test_a_shard_crashing_past_the_restart_budget_stops_its_channel_with_exit_3(
    mesh_factory: Callable[..., Mesh],
) -> None:
    mesh = mesh_factory({"process": {"restart_budget": 2, "restart_window_s": 60}, "channels": {"tick": {"shards": 2}}})
    mesh.start()
    sibling = mesh.pid("worker.tick.1")
    # Every restart of a shard re-reads the config: from now on it is invalid, so each restart exits 2 at once.
    mesh.config_path.write_text(mesh.config_path.read_text() + "\n[no_such_section]\nkey = 1\n")
    os.kill(mesh.pid("worker.tick.0"), signal.SIGKILL)
    supervisor = mesh.procs["supervisor.tick"]
    code = poll_until(lambda: supervisor.poll() is not None and (supervisor.returncode,), 30, what="the supervisor")
    assert code == (3,), mesh.log("supervisor.tick")
    log = mesh.log("supervisor.tick")
    assert log.count("restarted tick shard 0") == 2, log
    assert "the restart budget is spent" in log and "exiting 3" in log, log
    assert "invalid configuration" in log and "no_such_section" in log, log  # what the restarted shard said
    assert not psutil.pid_exists(sibling) or psutil.Process(sibling).status() == psutil.STATUS_ZOMBIE
    for other in ("ohlcv", "fmv"):  # the other channels' supervisors are not the ones that failed
        assert mesh.procs[f"supervisor.{other}"].poll() is None


def wakeups(pid: int) -> int:
    """How many times the process's main thread went to sleep and was woken (voluntary switches)."""
    status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")))


def test_an_idle_supervisor_sleeps_until_a_report_is_due_and_a_shard_exit_wakes_it(
    mesh_factory: Callable[..., Mesh],
) -> None:
    """The supervisor waits for a signal (SIGCHLD, SIGTERM) or its next status report (every 0.2 s here), not
    in 50 ms naps: over 3 s it wakes about 15 times, not 60 or more. A shard that dies is still restarted."""
    mesh = mesh_factory().start()
    supervisor = mesh.procs["supervisor.fmv"].pid
    before = wakeups(supervisor)
    time.sleep(3.0)  # the span measured
    woken = wakeups(supervisor) - before
    assert woken < 30, f"{woken} wake-ups in 3 s"
    os.kill(mesh.pid("worker.fmv.0"), signal.SIGKILL)
    poll_until(lambda: "restarted fmv shard 0" in mesh.log("supervisor.fmv"), 10, what="the restart")
    mesh.wait_reporting(["worker.fmv.0"], after_ns=time.time_ns())


def test_processes_without_live_settings_report_but_never_subscribe_to_the_config_stream(
    mesh_factory: Callable[..., Mesh],
) -> None:
    """The supervisors and the journal report their status, but apply no live config: they do not connect to
    control's config stream (a subscription nobody reads fills with messages and drops them unseen). The
    router, the aggregator and each shard do."""
    mesh = mesh_factory()
    config = mesh.ctx.socket(zmq.PUB)  # control's end of the config stream, played here
    mesh.on_close(partial(config.close, 0))
    monitor = config.get_monitor_socket(zmq.EVENT_ACCEPTED)
    mesh.on_close(partial(monitor.close, 0))
    config.bind(mesh.endpoints.control_config)
    mesh.start()
    mesh.spawn("journal", "-m", "journal")
    mesh.wait_reporting(["journal", *mesh.process_names()], after_ns=time.time_ns())
    subscribers = [n for n in mesh.process_names() if not n.startswith("supervisor.")]
    accepted = 0

    def count() -> int:
        nonlocal accepted
        while monitor.poll(0):
            accepted += recv_monitor_message(monitor)["event"] == zmq.EVENT_ACCEPTED
        return accepted

    poll_until(lambda: count() >= len(subscribers), 10, what=f"{subscribers} connected")
    # a supervisor's bus is made before it starts its shards: had it subscribed, it would be counted by now
    assert count() == len(subscribers), f"{accepted} connections; {subscribers} have live settings"
