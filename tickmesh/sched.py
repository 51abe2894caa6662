"""Scheduling at process start: CPU affinity per role, the opt-in real-time class for the P1 path, niceness below it."""

from __future__ import annotations

import logging
import os

from tickmesh.config import Config

log = logging.getLogger(__name__)
NICE_PER_PRIORITY = 3  # channel priority 1 → nice +0, 2 → +3, 3 → +6


def apply(config: Config, role: str, priority: int = 1) -> None:
    """Schedule this process as `role` (router, aggregator, or a channel's name for its shards).

    Call it first thing in main(), before any thread starts: threads inherit the calling
    thread's CPUs and class when they are created, so the zmq I/O thread (made with the
    first socket) runs like its process. A process of priority 1 (the P1 path) goes in the
    real-time class when `[process] realtime` asks for it; lower priorities run niced
    (+3 per step), so when the cores are contended the scheduler serves the tick path first.
    """
    cpus = getattr(config.process.cpus, role, ())
    if cpus:
        pin(set(cpus))
    if priority == 1 and config.process.realtime:
        realtime(config.process.realtime_priority)
    elif priority > 1:
        os.nice(NICE_PER_PRIORITY * (priority - 1))


def pin(cpus: set[int]) -> bool:
    """Run on `cpus` only; one warning line (and no change) if the host cannot."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:  # EINVAL: none of them exists or is allowed to this process (a cpuset)
        allowed = sorted(os.sched_getaffinity(0))
        log.warning("cannot run on CPUs %s (%s); running on %s", sorted(cpus), exc.strerror, allowed)
        return False
    log.info("running on CPUs %s", sorted(cpus))
    return True


def realtime(priority: int) -> bool:
    """SCHED_FIFO at `priority`; one warning line (and the normal class) where it is not permitted.

    FIFO, not RR: the mesh's loops block in zmq poll whenever their input is drained, so a
    time slice among equals would only ever cut a burst short. The priority stays modest
    (config caps it at 49, below the kernel's interrupt threads) and the kernel's real-time
    throttle (`kernel.sched_rt_runtime_us`, 95 % of each second by default) keeps a runaway
    loop from starving the host: leave it on.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:  # EPERM: no CAP_SYS_NICE and RLIMIT_RTPRIO below the priority
        log.warning(
            "real-time scheduling not permitted (%s): running in the normal class; grant CAP_SYS_NICE or "
            "LimitRTPRIO=%d (docs/deploy.md, Scheduling)",
            exc.strerror,
            priority,
        )
        return False
    log.info("real-time scheduling: SCHED_FIFO priority %d", priority)
    return True
