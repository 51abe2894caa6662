"""Scheduling at process start: CPU affinity per role, the opt-in time slice, real-time class and CPU
wake-up latency for the P1 path, niceness below it (for the process and its session), and the idle
class for what must never delay the mesh (the journal)."""

from __future__ import annotations

import ctypes
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
# struct sched_attr as far as sched_period (SCHED_ATTR_SIZE_VER0): size, policy, flags, nice, priority,
# runtime (for a normal-class thread since Linux 6.12: its time slice, ns), deadline, period
SCHED_ATTR = struct.Struct("=IIQiIQQQ")
SCHED_ATTR_CALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr
CPU_LATENCY = "/dev/cpu_dma_latency"  # the kernel's CPU latency QoS: a request lasts while its file is open
_held: list[BinaryIO] = []  # the P1 path's request, open until the process exits


def apply(config: Config, role: str, priority: int = 1) -> None:
    """Schedule this process as `role` (router, aggregator, or a channel's name for its shards).

    Call it first thing in main(), before any thread starts: threads inherit the calling
    thread's CPUs and class when they are created, so the zmq I/O thread (made with the
    first socket) runs like its process. A process of priority 1 (the P1 path) runs in time
    slices of `[process] slice_us`, goes in the real-time class when `[process] realtime` asks
    for it, and holds the CPUs' wake-up latency at `[process] cpu_latency_us`, each when set;
    lower priorities run niced (+3 per step), so when the cores are contended the scheduler
    serves the tick path first.
    """
    cpus = getattr(config.process.cpus, role, ())
    if cpus:
        pin(set(cpus))
    if priority == 1 and config.process.slice_us is not None:
        time_slice(config.process.slice_us)  # before realtime: setting a slice puts a thread in the normal class
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


def time_slice(us: int) -> bool:
    """Run in time slices of `us` µs (the kernel's custom slice for normal-class threads, Linux 6.12 and
    later; no privilege needed); one warning line (and the kernel's slice) where it cannot.

    The normal class (EEVDF) lets a thread that wakes preempt the running one at once only if its
    slice is the shorter; otherwise it may wait out the other's slice (the kernel's is 0.7 ms × (1 +
    log2 CPUs): 1.4 ms on two). A tick that wakes a P1 process beside a load generator, a subscriber
    or a niced shard in its default slice may wait that long; with a shorter slice it does not. Its
    own runs are cut that short only while something else waits for the CPU. A process already in
    another class (systemd's CPUSchedulingPolicy=) is left alone.
    """
    if os.sched_getscheduler(0) != os.SCHED_OTHER:
        return False
    calls = SCHED_ATTR_CALLS.get(os.uname().machine)
    nice = os.getpriority(os.PRIO_PROCESS, 0)  # sched_setattr sets the nice value too: keep this one
    attr = SCHED_ATTR.pack(SCHED_ATTR.size, os.SCHED_OTHER, 0, nice, 0, us * 1_000, 0, 0)
    if calls is None:
        why = f"no sched_setattr number known for {os.uname().machine}"
    elif ctypes.CDLL(None, use_errno=True).syscall(calls[0], 0, attr, 0) != 0:
        why = os.strerror(ctypes.get_errno())  # EPERM: a seccomp profile or an LSM
    elif slice_ns(0) != us * 1_000:
        why = "this kernel has no custom time slices (Linux 6.12 or later has)"  # it ignored the runtime
    else:
        log.info("time slices of %d µs: a waking P1 process preempts normal-class work in longer ones", us)
        return True
    log.warning("cannot run in %d µs time slices (%s): running in the kernel's (docs/deploy.md, Scheduling)", us, why)
    return False


def slice_ns(tid: int) -> int | None:
    """A normal-class thread's time slice in ns (0 where the kernel predates custom slices; its own
    default where none was asked for); None where it cannot be read. `tid` 0: the calling thread."""
    calls = SCHED_ATTR_CALLS.get(os.uname().machine)
    got = ctypes.create_string_buffer(SCHED_ATTR.size)
    if calls is None or ctypes.CDLL(None, use_errno=True).syscall(calls[1], tid, got, SCHED_ATTR.size, 0) != 0:
        return None
    return int(SCHED_ATTR.unpack(got.raw)[5])


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
