"""One benchmark stage's processes: private ipc endpoints, a generated TOML config, the status bus, clean stops."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psutil
import zmq

from tickmesh import meshrun
from tickmesh.bus import Status, status_decoder
from tickmesh.config import CHANNELS, Config, load_config, to_toml
from tickmesh.endpoints import Endpoints
from tickmesh.sockets import make_socket

log = logging.getLogger(__name__)
T = TypeVar("T")
STOP_WAIT_S = 8.0
_codec = msgspec.msgpack.Encoder()
_reply = msgspec.msgpack.Decoder()


class StageError(RuntimeError):
    """A process of the stage died or did not answer; the message says which, with its log's tail."""


def poll_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `check` until it returns something truthy; StageError after `timeout` seconds."""
    return meshrun.poll_until(check, timeout, what, interval, error=StageError)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


class Stage:
    """Processes started for one measurement, all stopped by `close` whatever happened.

    Endpoints are ipc paths in a private temp dir (short: ipc paths are limited
    to about 100 bytes). The harness binds the bus's `control_status` PULL itself
    and reads every process's Status (counters, gauges, RSS, CPU) from it.
    """

    def __init__(self, name: str, settings: dict[str, Any] | None = None) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="tmb-"))
        names = [n for n in Endpoints.__struct_fields__ if n not in ("grpc", "prometheus")]
        data: dict[str, Any] = {"endpoints": {n: f"ipc://{self.dir}/{n}" for n in names}}
        data["endpoints"].update(grpc="127.0.0.1:0", prometheus="127.0.0.1:0")
        data = merge(data, settings or {})
        self.config_path = self.dir / "tickmesh.toml"
        self.config_path.write_text(to_toml(data))
        self.config: Config = load_config(str(self.config_path), env={})
        self.endpoints = self.config.endpoints
        self.ctx = zmq.Context()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.statuses: dict[str, Status] = {}
        self._reaped: set[str] = set()
        self._finishing: set[str] = set()  # processes that end by themselves: exit 0 is no failure
        self.status_pull = make_socket(self.ctx, zmq.PULL, bind=self.endpoints.control_status, hwm=100_000)

    # -- processes ---------------------------------------------------------------------
    def spawn(self, name: str, *args: str, config: bool = True) -> subprocess.Popen[bytes]:
        """`python ARGS --config FILE` in its own session (so Ctrl-C reaches only the harness), logging to a file."""
        out = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - the child holds it; closed with the stage
        argv = [sys.executable, *args] + (["--config", str(self.config_path)] if config else [])
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
        proc = subprocess.Popen(argv, cwd=self.dir, stdout=out, stderr=out, env=env, start_new_session=True)
        out.close()
        self.procs[name] = proc
        return proc

    def endpoint(self, name: str) -> str:
        return f"ipc://{self.dir}/{name}"

    def start_mesh(self, timeout: float = 30.0) -> list[str]:
        """Routers, one worker supervisor per channel (it starts the shards), aggregator; once all report."""
        for index, name in enumerate(self.router_names()):
            self.spawn(name, "-m", "router", "--index", str(index))
        for channel in CHANNELS:
            self.spawn(f"supervisor.{channel}", "-m", "workers", channel)
        self.spawn("aggregator", "-m", "aggregator")
        names = self.mesh_names()
        self.wait_reporting(names, timeout=timeout)
        return names

    def router_names(self) -> list[str]:
        """`router`, then `router.1`, … (`[router] count`)."""
        return ["router" if i == 0 else f"router.{i}" for i in range(self.config.router.count)]

    def mesh_names(self) -> list[str]:
        names = [*self.router_names(), "aggregator"]
        for channel in CHANNELS:
            names.append(f"supervisor.{channel}")
            names += [f"worker.{channel}.{s}" for s in range(self.config.channel(channel).shards)]
        return names

    def log_tail(self, name: str, chars: int = 3_000) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def check_alive(self, names: Iterable[str] | None = None) -> None:
        for name in names if names is not None else list(self.procs):
            proc = self.procs.get(name)
            if proc is None or name in self._reaped or proc.poll() is None:
                continue
            if not (name in self._finishing and proc.returncode == 0):
                raise StageError(f"{self.name}: {name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    # -- the bus -------------------------------------------------------------------------
    def read_bus(self) -> dict[str, Status]:
        while self.status_pull.poll(0):
            try:
                status = status_decoder.decode(self.status_pull.recv())
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            self.statuses[status.process] = status
        return self.statuses

    def wait_reporting(self, names: Iterable[str], after_ns: int = 0, timeout: float = 15.0) -> dict[str, Status]:
        wanted = set(names)

        def reported() -> bool:
            self.check_alive()
            statuses = self.read_bus()
            return all(n in statuses and statuses[n].time_ns > after_ns for n in wanted)

        poll_until(reported, timeout, f"{self.name}: status from {sorted(wanted)}")
        return self.statuses

    def fresh(self, names: Iterable[str], timeout: float = 10.0) -> dict[str, Status]:
        """Statuses of `names` sent after this call."""
        return self.wait_reporting(names, after_ns=time.time_ns(), timeout=timeout)

    def counter_sum(self, prefix: str = "", suffix: str = "", names: Iterable[str] | None = None) -> int:
        statuses = self.statuses if names is None else {n: self.statuses[n] for n in names if n in self.statuses}
        return sum(
            v for s in statuses.values() for k, v in s.counters.items() if k.startswith(prefix) and k.endswith(suffix)
        )

    def gauge_sum(self, suffixes: tuple[str, ...], names: Iterable[str]) -> float:
        return sum(
            v for n in names if n in self.statuses for k, v in self.statuses[n].gauges.items() if k.endswith(suffixes)
        )

    def pids(self) -> dict[str, int]:
        """Every process of the stage by name: the ones started here and the ones they started (from the bus)."""
        out = {name: proc.pid for name, proc in self.procs.items() if proc.poll() is None}
        for name, status in self.read_bus().items():
            out.setdefault(name, status.pid)
        return out

    # -- control sockets of bench processes ------------------------------------------------
    def call(self, endpoint: str, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """One request to a bench process's REP socket (a fresh REQ per call: a lost reply never wedges it)."""
        req = make_socket(self.ctx, zmq.REQ, connect=endpoint, hwm=10)
        try:
            req.send(_codec.encode(message))
            deadline = time.monotonic() + timeout
            while not req.poll(100):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise StageError(f"{self.name}: {endpoint} did not answer {message.get('op')}")
            reply: dict[str, Any] = _reply.decode(req.recv())
            return reply
        finally:
            req.close(0)

    # -- stopping ---------------------------------------------------------------------------
    def stop(self, names: Iterable[str], wait_s: float = STOP_WAIT_S) -> dict[str, int | None]:
        """SIGTERM, wait, then kill the process group (a supervisor's shards with it)."""
        procs = [(n, self.procs[n]) for n in names if n in self.procs]
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        codes: dict[str, int | None] = {}
        for name, proc in procs:
            try:
                codes[name] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s: %s did not stop in %.0f s; killing it", self.name, name, wait_s)
                codes[name] = None
            _kill_group(proc)
            self._reaped.add(name)
        return codes

    def kill(self, name: str) -> None:
        """SIGKILL one process (a crash, on purpose) and reap it: it no longer counts as died unexpectedly."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self._reaped.add(name)

    def finishes(self, name: str) -> None:
        """`name` ends by itself (a feed with a duration): its exit with 0 is not a death, whenever it comes."""
        self._finishing.add(name)

    def close(self, keep_dir: bool = False) -> None:
        """Stop everything this stage started: bench processes first, then the mesh in data-flow order."""
        order = [n for n in self.procs if n.startswith(("load", "flood"))]
        order += [n for n in self.procs if n not in order and n not in ("aggregator", "sink")]
        order += [n for n in ("aggregator", "sink") if n in self.procs]
        try:
            self.stop([n for n in order if n not in self._reaped])
        finally:
            for name, proc in self.procs.items():
                if name not in self._reaped:
                    _kill_group(proc)
            self.ctx.destroy(linger=0)  # closes any socket a failed measurement left open
            if not keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill what is left of a process we started and of its session (shards of a supervisor)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (missing ones are left out)."""
    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[name] = times.user + times.system
    return out


def memory_bytes(pids: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(RSS, USS) of each process: USS leaves out pages shared with other processes (libpython, libzmq)."""
    out = {}
    for name, pid in pids.items():
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        out[name] = (info.rss, info.uss)
    return out
