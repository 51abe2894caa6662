"""Scheduling for real: the P1 path in SCHED_FIFO, pinned, holding the CPUs' wake-up latency where asked; without
permission one line, and it runs."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.mesh import Mesh, collect, poll_until
from tickmesh import sched
from tickmesh.schema import Trade

S = 1_000_000_000
FALLBACK = "real-time scheduling not permitted"
AUTOGROUP = "/proc/self/autogroup"
CPU_LATENCY = "/dev/cpu_dma_latency"


def _realtime_permitted() -> bool:
    """Whether this host lets a child process of ours enter SCHED_FIFO (root with CAP_SYS_NICE, or RLIMIT_RTPRIO)."""
    probe = "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30).returncode == 0


def _autogroup(pid: int) -> str:
    return Path(f"/proc/{pid}/autogroup").read_text()  # "/autogroup-42 nice 3"


def _custom_slices() -> bool:
    """Whether this kernel gives a normal-class process the time slice it asks for (Linux 6.12 and later)."""
    probe = "from tickmesh import sched; raise SystemExit(0 if sched.time_slice(300) else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30).returncode == 0


def _threads(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def _cpu_latency_us() -> int:
    """The host's CPU wake-up latency now: the lowest request any process holds, else the kernel's default."""
    with open(CPU_LATENCY, "rb") as f:
        return int(struct.unpack("=i", f.read(4))[0])


def _holds_cpu_latency(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fds / fd) == CPU_LATENCY for fd in os.listdir(fds))


def _events_flow(mesh: Mesh) -> None:
    sub = mesh.subscriber()
    now = time.time_ns()
    mesh.push([Trade("SCHED", 10.0 + i, 1, now + i * 2 * S) for i in range(3)])
    assert [p.event.price for p in collect(sub, lambda got: len(got) >= 2)] == [11.0, 12.0]


@pytest.mark.skipif(not _realtime_permitted(), reason="this host does not permit SCHED_FIFO (no CAP_SYS_NICE)")
def test_the_p1_path_runs_realtime_and_pinned_the_rest_niced(mesh_factory: Callable[..., Mesh]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    first, last = cpus[0], cpus[-1]
    process = {"realtime": True, "realtime_priority": 7, "cpus": {"router": [first], "tick": [last]}}
    mesh = mesh_factory({"process": process}).start()
    pids = {name: mesh.pid(name) for name in mesh.process_names()}
    for name in ("router", "aggregator", "worker.tick.0"):
        for tid in _threads(pids[name]):  # every thread, the zmq I/O thread too: they inherit the class
            assert os.sched_getscheduler(tid) == os.SCHED_FIFO, (name, tid)
            assert os.sched_getparam(tid).sched_priority == 7, (name, tid)
    for name in ("worker.ohlcv.0", "worker.fmv.0", "supervisor.tick", "supervisor.ohlcv"):
        assert os.sched_getscheduler(pids[name]) == os.SCHED_OTHER, name  # a supervisor's shards inherit its class
    base = os.getpriority(os.PRIO_PROCESS, pids["supervisor.ohlcv"])
    assert os.getpriority(os.PRIO_PROCESS, pids["worker.ohlcv.0"]) == base + 3  # priority 2: niced as before
    assert os.getpriority(os.PRIO_PROCESS, pids["worker.fmv.0"]) == base + 6
    assert os.sched_getaffinity(pids["router"]) == {first}
    assert os.sched_getaffinity(pids["worker.tick.0"]) == {last}
    assert os.sched_getaffinity(pids["aggregator"]) == set(cpus)  # no setting: unchanged
    assert "real-time scheduling: SCHED_FIFO priority 7" in mesh.log("router")
    _events_flow(mesh)


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("prlimit")),
    reason="needs root and util-linux's setpriv and prlimit to take the permission away",
)
def test_without_the_permission_each_p1_process_says_so_once_and_runs(mesh_factory: Callable[..., Mesh]) -> None:
    mesh = mesh_factory({"process": {"realtime": True}})
    # root without CAP_SYS_NICE and with RLIMIT_RTPRIO 0: what a container without SYS_NICE gets
    mesh.prefix = ["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice", "prlimit", "--rtprio=0", "--"]
    mesh.start()
    for name in ("router", "aggregator", "worker.tick.0"):
        assert os.sched_getscheduler(mesh.pid(name)) == os.SCHED_OTHER, name
    if os.path.exists(AUTOGROUP):  # not the leader of its session (ours): a shard leaves the session's share alone
        assert _autogroup(mesh.pid("worker.fmv.0")) == Path(AUTOGROUP).read_text()
    # a shard logs into its supervisor's output
    for name, lines in (("router", 1), ("aggregator", 1), ("supervisor.tick", 1), ("supervisor.ohlcv", 0)):
        text = mesh.log(name)
        assert text.count(FALLBACK) == lines, (name, text)
        assert "LimitRTPRIO=10" in text or lines == 0
    _events_flow(mesh)


@pytest.mark.skipif(not _custom_slices(), reason="this kernel has no custom time slices (Linux 6.12 or later)")
def test_the_p1_path_runs_in_the_time_slices_asked_for_and_keeps_its_nice_value(
    mesh_factory: Callable[..., Mesh],
) -> None:
    mesh = mesh_factory({"process": {"slice_us": 250}})
    mesh.prefix = ["nice", "-n", "2"]  # started niced: setting the slice must not reset the nice value
    mesh.start()
    mesh.spawn("subscriber", "-m", "subscriber")  # tickmesh-subscribe: the tick path's last hop
    poll_until(lambda: len(_threads(mesh.procs["subscriber"].pid)) > 1, 10, what="the subscriber's zmq thread")
    pids = {name: mesh.pid(name) for name in ("router", "aggregator", "worker.tick.0")}
    for name, pid in {**pids, "subscriber": mesh.procs["subscriber"].pid}.items():
        for tid in _threads(pid):  # every thread, the zmq I/O thread too: they inherit it
            assert sched.slice_ns(tid) == 250_000, (name, tid)
            assert os.getpriority(os.PRIO_PROCESS, tid) == 2, (name, tid)
    for name, nice in (("worker.ohlcv.0", 5), ("worker.fmv.0", 8), ("supervisor.tick", 2)):
        assert sched.slice_ns(mesh.pid(name)) != 250_000, name  # only the P1 path asks
        assert os.getpriority(os.PRIO_PROCESS, mesh.pid(name)) == nice, name
    for name in ("router", "aggregator", "supervisor.tick", "subscriber"):  # a tick shard logs into its supervisor's
        assert mesh.log(name).count("time slices of 250 µs") == 1, name
    _events_flow(mesh)


@pytest.mark.skipif(not os.path.exists(AUTOGROUP), reason="a kernel without autogroup (CONFIG_SCHED_AUTOGROUP)")
def test_started_a_session_each_as_honcho_does_the_lower_channels_and_the_journal_get_less_cpu(
    mesh_factory: Callable[..., Mesh],
) -> None:
    """With autogroup the kernel shares the CPU between sessions before nice counts: each session is niced whole."""
    mesh = mesh_factory()
    mesh.prefix = ["setsid"]  # a session per process, as honcho, `tickmesh up` and systemd start them
    mesh.start()
    mesh.spawn("journal", "-m", "journal")
    poll_until(lambda: "journal" in mesh.read_bus(), 30, what="the journal reporting")
    names = ("router", "aggregator", "worker.tick.0", "worker.ohlcv.0", "worker.fmv.0", "journal")
    nice = {name: int(_autogroup(mesh.pid(name)).split()[-1]) for name in names}
    assert nice == {"router": 0, "aggregator": 0, "worker.tick.0": 0, "worker.ohlcv.0": 3, "worker.fmv.0": 6,
                    "journal": 19}  # fmt: skip
    assert _autogroup(mesh.pid("worker.ohlcv.0")) == _autogroup(mesh.pid("supervisor.ohlcv"))  # its supervisor's
    for tid in _threads(mesh.pid("journal")):
        assert os.sched_getscheduler(tid) == os.SCHED_IDLE, tid
    _events_flow(mesh)


@pytest.mark.skipif(not os.access(CPU_LATENCY, os.R_OK | os.W_OK), reason="no CPU latency QoS here, or not root")
def test_the_p1_path_holds_the_cpus_wake_up_latency_while_it_runs_and_a_kill_9_gives_it_back(
    mesh_factory: Callable[..., Mesh],
) -> None:
    before = _cpu_latency_us()  # the kernel's default (2,000,000,000) unless something else holds a request
    mesh = mesh_factory({"process": {"cpu_latency_us": 7}}).start()
    pids = {name: mesh.pid(name) for name in mesh.process_names()}
    for name in ("router", "aggregator", "worker.tick.0"):
        assert _holds_cpu_latency(pids[name]), name
    for name in ("worker.ohlcv.0", "worker.fmv.0", "supervisor.tick", "supervisor.ohlcv"):
        assert not _holds_cpu_latency(pids[name]), name  # only the P1 path asks
    assert _cpu_latency_us() == min(before, 7)
    for name in ("router", "aggregator", "supervisor.tick"):  # a tick shard logs into its supervisor's output
        assert mesh.log(name).count("CPU wake-up latency held at 7 µs") == 1, name
    _events_flow(mesh)
    for pid in pids.values():  # no process says goodbye: the kernel drops each request with its process
        os.kill(pid, signal.SIGKILL)
    poll_until(lambda: _cpu_latency_us() == before, 15, what="the host's own wake-up latency back")
