"""`tickmesh-worker CHANNEL`: supervise the channel's shard processes, restarting any that dies.

honcho stops the whole mesh when one process exits, so restarts happen here,
below it: each shard runs as `python -m workers.shard CHANNEL N`; a shard that
exits unexpectedly is restarted with exponential backoff (reset after it has
run for a while) and the restart is counted on the bus. After
`[process] restart_budget` restarts within `restart_window_s` it gives up:
stops the other shards and exits 3, so honcho, systemd or Kubernetes sees the
failure. SIGTERM is passed on and the shards are given time to drain. Under an
orchestrator, run each shard as its own process instead (`tickmesh-shard`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

from tickmesh import sched
from tickmesh.bus import Reporter
from tickmesh.cli import EXIT_USAGE
from tickmesh.config import CHANNELS
from tickmesh.curve import secure_context
from tickmesh.health import HEALTH_ENV, start_probes, stop_probes
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, endpoint_exit, mesh_parser, start
from tickmesh.sockets import EndpointError
from workers.budget import RestartBudget

log = logging.getLogger(__name__)

BACKOFF_S = (0.2, 10.0)  # first and longest wait before a restart
STABLE_S = 30.0  # a shard that ran this long starts over at the first backoff
EXIT_BUDGET_SPENT = 3  # docs/deploy.md's exit code table


class Child:
    """One supervised shard process and its restart schedule."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = BACKOFF_S[0]
        self.restart_at = 0.0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != HEALTH_ENV}  # the supervisor's probe port is its own
        self.proc = subprocess.Popen(self.command, env=env)
        self.started = time.monotonic()

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def schedule_restart(self) -> float:
        if time.monotonic() - self.started >= STABLE_S:
            self.backoff = BACKOFF_S[0]
        self.restart_at = time.monotonic() + self.backoff
        wait, self.backoff = self.backoff, min(self.backoff * 2, BACKOFF_S[1])
        return wait


def main(argv: list[str] | None = None) -> int:
    p = mesh_parser("tickmesh-worker", "Run and supervise a channel's worker shards.")
    p.add_argument("channel", choices=CHANNELS)
    p.add_argument("--shard", type=int, action="append", help="supervise only this shard (repeatable; default all)")
    args = p.parse_args(argv)
    config = start(args, f"supervisor.{args.channel}")
    if config is None:
        return EXIT_USAGE
    shards = args.shard or list(range(config.channel(args.channel).shards))
    priority = config.channel(args.channel).priority
    if priority > 1:  # the shards run in this process's session: its CPU share is theirs (sched.session_nice)
        sched.session_nice(sched.channel_nice(priority))
    extra = ["--log-level", args.log_level] + (["--config", args.config] if args.config else [])
    children = {n: Child([sys.executable, "-m", "workers.shard", args.channel, str(n), *extra]) for n in shards}
    stop = StopFlag(config.process.stop_budget(0.2))
    ctx = secure_context(config, "worker")
    metrics = Metrics()
    name = f"supervisor.{args.channel}"
    try:
        probes = start_probes(args.health, stop.health) if args.health else None
        bus = Reporter(ctx, config, process=name, role="supervisor", metrics=metrics)
    except EndpointError as exc:
        log.error("%s", exc)
        ctx.term()
        return endpoint_exit(exc)
    budget = RestartBudget(config.process.restart_budget, config.process.restart_window_s)
    wake = Wake()  # before the shards start: an exit is never missed
    for child in children.values():
        child.start()
    try:
        while not stop:
            if not all(_watch(args.channel, shard, child, metrics, budget) for shard, child in children.items()):
                log.error(
                    "%s: more than %d shard restarts within %.0f s: stopping its shards and exiting %d",
                    name,
                    budget.budget,
                    budget.window_s,
                    EXIT_BUDGET_SPENT,
                )
                return EXIT_BUDGET_SPENT
            down = [str(shard) for shard, child in children.items() if child.exited() is not None]
            stop.health.ready(f"{args.channel} shards waiting for a restart: {', '.join(down)}" if down else "")
            bus.report()
            wake.wait(_next_turn_s(children.values(), bus.report_in_s))
    finally:
        _stop_all(children.values(), config.process.stop_budget(0.5))
        bus.report(force=True)
        bus.close()
        ctx.term()
        stop_probes(probes)
    return 0


class Wake:
    """Sleep until a signal arrives (a shard exiting: SIGCHLD; a stop: SIGTERM, SIGINT) or a timeout.

    Python runs signal handlers between bytecodes and retries an interrupted
    sleep, so the loop would only see a signal at the end of its sleep; the
    signal's byte on a wakeup pipe ends the wait at once instead. The loop
    wakes when there is something to do, not 20 times a second to look.
    """

    def __init__(self) -> None:
        self.read, write = os.pipe()
        os.set_blocking(self.read, False)
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so SIGCHLD reaches the pipe

    def wait(self, timeout_s: float) -> None:
        if select.select([self.read], [], [], timeout_s)[0]:
            with contextlib.suppress(BlockingIOError):
                os.read(self.read, 4096)


def _next_turn_s(children: Iterable[Child], report_s: float) -> float:
    """Until the next restart or status report is due; at most a second (/livez reads the loop's turns)."""
    now = time.monotonic()
    due = [child.restart_at - now for child in children if child.restart_at]
    return max(0.0, min([report_s, 1.0, *due]))


def _watch(channel: str, shard: int, child: Child, metrics: Metrics, budget: RestartBudget) -> bool:
    """Restart `child` when it is due; False when it died and the restart budget is spent."""
    code = child.exited()
    if code is None:
        return True
    if child.restart_at and time.monotonic() >= child.restart_at:
        child.restart_at = 0.0
        child.start()
        metrics.count(f"{channel}.restarts")
        log.info("restarted %s shard %d", channel, shard)
    elif not child.restart_at:
        metrics.count(f"{channel}.crashes")
        if not budget.spend(time.monotonic()):
            log.error("%s shard %d exited with %s; the restart budget is spent", channel, shard, code)
            return False
        wait = child.schedule_restart()
        log.error("%s shard %d exited with %s; restarting in %.1f s", channel, shard, code, wait)
    return True


def _stop_all(children: object, wait_s: float) -> None:
    live = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]  # type: ignore[attr-defined]
    for proc in live:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for proc in live:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("shard pid %d did not stop in time; killing it", proc.pid)
            proc.kill()
            proc.wait()
