"""Scheduling at process start: CPU affinity per role, the opt-in real-time class and CPU wake-up latency for
the P1 path, niceness below it (for the process and its session), and the idle class for what must never delay
the mesh (the journal)."""

from __future__ import annotations

import errno
import logging
import os
import struct
import time
from typing import BinaryIO

from tickmesh.config import Config

log = logging.getLogger(__name__)
NICE_PER_PRIORITY = 3  # channel priority 1 → nice +0, 2 → +3, 3 → +6
AUTOGROUP = "/proc/self/autogroup"
BACKGROUND_NICE = 10  # where the idle class is refused: below every channel's workers (nice +6)
AUTOGROUP_WAIT_S = 3.0  # an unprivileged write just after anyone else's is refused (EAGAIN): a rate limit
CPU_LATENCY = "/dev/cpu_dma_latency"  # the kernel's CPU latency QoS: a request lasts while its file is open
_held: list[BinaryIO] = []  # the P1 path's request, open until the process exits


def apply(config: Config, role: str, priority: int = 1) -> None:
    """Schedule this process as `role` (router, aggregator, or a channel's name for its shards).

    Call it first thing in main(), before any thread starts: threads inherit the calling
    thread's CPUs and class when they are created, so the zmq I/O thread (made with the
    first socket) runs like its process. A process of priority 1 (the P1 path) goes in the
    real-time class when `[process] realtime` asks for it, and holds the CPUs' wake-up latency
    at `[process] cpu_latency_us` when that is set; lower priorities run niced (+3 per step),
    so when the cores are contended the scheduler serves the tick path first.
    """
    cpus = getattr(config.process.cpus, role, ())
    if cpus:
        pin(set(cpus))
    if priority == 1 and config.process.cpu_latency_us is not None:
        request = cpu_latency(config.process.cpu_latency_us)
        if request is not None:
            _held.append(request)
    if priority == 1 and config.process.realtime:
        realtime(config.process.realtime_priority)
    elif priority > 1:
        os.nice(channel_nice(priority))
        session_nice(channel_nice(priority))  # a shard that leads its session (a systemd unit of its own)


def channel_nice(priority: int) -> int:
    """The niceness of a channel's shards (and of its supervisor's session): +3 per step below priority 1."""
    return NICE_PER_PRIORITY * (priority - 1)


def session_nice(nice: int) -> bool:
    """Give this process's session the CPU share of `nice` (its autogroup's nice), if the process leads it.

    With autogroup (`kernel.sched_autogroup_enabled`, on in most distributions' kernels) the
    kernel first shares the CPU between sessions, and a nice value counts only within one. honcho,
    `tickmesh up` and systemd start each process in a session of its own, so a niced shard or the
    journal would otherwise still get as much CPU as the tick path. A process that does not lead
    its session (started from a shell beside others) leaves it alone: that would lower them all.
    """
    if os.getsid(0) != os.getpid():
        return False
    deadline = time.monotonic() + AUTOGROUP_WAIT_S
    while True:
        try:
            with open(AUTOGROUP, "w") as f:
                f.write(str(nice))
        except OSError as exc:
            if exc.errno == errno.EAGAIN and time.monotonic() < deadline:
                time.sleep(0.25)  # host-wide, the kernel takes unprivileged writes only so often
                continue
            if exc.errno != errno.ENOENT:  # ENOENT: a kernel without autogroup, where nice alone is enough
                log.warning("cannot lower this session's CPU share to nice %+d (%s)", nice, exc.strerror)
            return False
        log.info("session CPU share (autogroup) at nice %+d", nice)
        return True


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


def cpu_latency(us: int) -> BinaryIO | None:
    """Keep every CPU able to wake within `us` µs until the returned request is closed (or this process
    exits); None and one warning line where refused.

    A CPU with nothing to run sleeps in an idle state, and the deeper the state the longer it
    takes to wake when a message arrives for a process that waits on it: on a virtual machine
    each sleep is also an exit to the hypervisor, and the wake-up an interrupt through it. The
    kernel's CPU latency QoS (`/dev/cpu_dma_latency`, what tuned's latency profiles set) keeps
    the CPUs out of idle states slower than `us` for as long as the request's file is open;
    at 0 an idle CPU polls for work instead of sleeping. It is host-wide: every CPU, for as long
    as any process holds a request (the lowest wins). The kernel drops a request with its file,
    so the host goes back to its default when the P1 path stops, also after a kill -9.
    """
    try:
        request = open(CPU_LATENCY, "wb", buffering=0)  # noqa: SIM115 (open while the request holds)
        request.write(struct.pack("=i", us))
    except OSError as exc:  # EACCES: the file is root's (0600); ENOENT: a kernel without PM QoS
        log.warning(
            "cannot hold CPU wake-up latency at %d µs (%s: %s): CPUs sleep as the host decides; "
            "run as root or give the user write access to %s (docs/deploy.md, Scheduling)",
            us,
            CPU_LATENCY,
            exc.strerror,
            CPU_LATENCY,
        )
        return None
    log.info("CPU wake-up latency held at %d µs (%s)%s", us, CPU_LATENCY, ": idle CPUs poll" if us == 0 else "")
    return request


def background() -> bool:
    """SCHED_IDLE: run only on CPU time no other process wants; nice +10 (one warning line) where refused.

    For work off the publishing path that may lag and catch up (the journal). Within a session a
    waking normal-class process preempts an idle-class one at once; between sessions (autogroup)
    only the session's share counts, hence session_nice(19) too. Starved for a while, such a
    process lags and says so (journal.lag).
    """
    session_nice(19)  # and below every other session (autogroup: see session_nice)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:  # seccomp or an LSM can refuse it; plain Linux lets any process lower itself
        log.warning("idle scheduling class refused (%s): running at nice +%d", exc.strerror, BACKGROUND_NICE)
        os.nice(BACKGROUND_NICE)
        return False
    log.info("scheduling: SCHED_IDLE (runs on CPU time the mesh leaves)")
    return True
