"""Test harness: real mesh processes on private ipc endpoints, a bus listener, a producer and subscribers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import msgspec
import psutil
import zmq

from subscriber.client import Subscriber, ask_replay
from tickmesh import meshrun
from tickmesh.bus import Status, status_decoder
from tickmesh.config import CHANNELS, Config, load_config, to_toml
from tickmesh.curve import secure_context
from tickmesh.endpoints import Endpoints
from tickmesh.producer import Producer
from tickmesh.schema import Publication, Record, ReplayReply, ReplayRequest
from tickmesh.sockets import make_socket

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None | Literal[False]], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Call `check` until it returns something truthy; fail the test after `timeout` seconds."""
    return meshrun.poll_until(check, timeout, what or repr(check), interval, error=AssertionError)  # type: ignore[return-value]


def start_honcho(folder: Path, out: IO[bytes]) -> subprocess.Popen[bytes]:
    """`honcho start` on the repository's Procfile in `folder`, its output to `out`, in a session of its own.

    honcho runs as `python -m honcho` of this interpreter, whose folder leads PATH so the Procfile's
    `python` is this one too: the test runs (never skips) in a venv that is not activated. Every
    process reads `TICKMESH_CONFIG`, a file beside `folder` (so `folder` stays empty) that moves the
    default tcp ports to free ones (honcho_config): two suites on one host never meet. The rest is the
    default, private links included (unix sockets in `folder`/.tickmesh/run).
    """
    shutil.copy(ROOT / "Procfile", folder / "Procfile")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    config = write_honcho_config(folder)
    return subprocess.Popen(
        [sys.executable, "-m", "honcho", "start"],
        cwd=folder,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", PATH=path, TICKMESH_CONFIG=str(config)),
    )


def honcho_config(folder: Path) -> Path:
    """The config start_honcho gives the mesh it runs in `folder`: beside it, never in it."""
    return folder.parent / f"{folder.name}.toml"


def write_honcho_config(folder: Path) -> Path:
    """Fresh free ports for every tcp address a default mesh listens on: the tcp endpoints, gRPC,
    Prometheus and the web page (derived from the defaults, so a new default tcp endpoint is moved too)."""
    defaults = Endpoints()
    endpoints = {
        name: f"tcp://127.0.0.1:{free_port()}"
        for name in Endpoints.__struct_fields__
        if getattr(defaults, name).startswith("tcp://")
    }
    endpoints |= {"grpc": f"127.0.0.1:{free_port()}", "prometheus": f"127.0.0.1:{free_port()}"}
    path = honcho_config(folder)
    path.write_text(to_toml({"endpoints": endpoints, "web": {"listen": f"127.0.0.1:{free_port()}"}}))
    return path


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (honcho starts its processes in sessions of their own,
    so killing its process group would leave them running, holding the default ports)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(tree, timeout=10)


def ipc_endpoints(folder: str) -> dict[str, str]:
    """Every zmq endpoint as an ipc path in `folder`; grpc/prometheus on free loopback ports."""
    names = [n for n in Endpoints.__struct_fields__ if n not in ("grpc", "prometheus")]
    out = {n: f"ipc://{folder}/{n}" for n in names}
    out["grpc"] = f"127.0.0.1:{free_port()}"
    out["prometheus"] = f"127.0.0.1:{free_port()}"
    return out


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now, for a process to bind later, below the kernel's ephemeral range.

    A port bound with 0 comes from that range, and so does the local port of every outgoing
    connection: one made between this choice and the bind could take the port ("Address already
    in use"). Below the range only a bind takes a port, and each one is handed out once.
    """
    import random
    import socket

    low = _ephemeral_low()
    while True:
        port = random.randrange(10_000, low) if low > 11_000 else 0  # no room below: take the kernel's
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(s.getsockname()[1])
        _HANDED_OUT.add(port)
        return port


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (Linux; 32768, its default, elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


class Mesh:
    """Starts and stops real mesh processes; plays the control process's part on the bus."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        # ipc paths must be short (about 100 bytes), so not under pytest's tmp_path.
        self.dir = Path(tempfile.mkdtemp(prefix="tm-"))
        data = {"endpoints": ipc_endpoints(str(self.dir))}
        for section, values in (settings or {}).items():
            data.setdefault(section, {}).update(values)
        self.config_path = self.dir / "tickmesh.toml"
        self.config_path.write_text(to_toml(data))
        self.config: Config = load_config(str(self.config_path), env={})
        self.endpoints = self.config.endpoints
        self.ctx = secure_context(self.config, "control")  # it plays control's part: control's keys under CURVE
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}  # extra environment for the processes
        self.prefix: list[str] = []  # a command each process runs under (e.g. setpriv: fewer capabilities)
        self.statuses: dict[str, Status] = {}
        self.status_pull: zmq.Socket | None = None  # type: ignore[type-arg]
        self._sockets: list[Any] = []
        self._closers: list[Callable[[], object]] = []  # what a test made beside the mesh, stopped with it

    def on_close(self, stop: Callable[[], object]) -> None:
        """Call `stop` when the mesh closes: a failing test still stops what it started (a reader
        thread's own zmq context left open could block a later test's garbage collection)."""
        self._closers.append(stop)

    # -- processes -----------------------------------------------------------------
    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        proc = subprocess.Popen(
            [*self.prefix, sys.executable, *args, "--config", str(self.config_path)],
            cwd=self.dir,
            stdout=log,
            stderr=log,
            env=env,
        )
        self.procs[name] = proc
        return proc

    def start(self, with_bus: bool = True) -> Mesh:
        """Router, one worker per channel shard, aggregator; returns once all of them report on the bus."""
        if with_bus:
            self.listen_bus()
        for name, index in self.routers():
            self.spawn(name, "-m", "router", "--index", str(index))
        for channel in CHANNELS:
            self.spawn(f"supervisor.{channel}", "-m", "workers", channel)
        self.spawn("aggregator", "-m", "aggregator")
        if with_bus:
            self.wait_reporting(self.process_names())
        return self

    def routers(self) -> list[tuple[str, int]]:
        """(process name, index) of each router: `router`, then `router.1`, … (`[router] count`)."""
        return [("router" if i == 0 else f"router.{i}", i) for i in range(self.config.router.count)]

    def process_names(self) -> list[str]:
        names = [name for name, _ in self.routers()] + ["aggregator"]
        for channel in CHANNELS:
            names.append(f"supervisor.{channel}")
            names += [f"worker.{channel}.{s}" for s in range(self.config.channel(channel).shards)]
        return names

    def pid(self, process: str) -> int:
        """The pid a process reports on the bus (worker shards are children of their supervisor)."""
        return self.read_bus()[process].pid

    def recorded_end(self, epoch: int) -> int:
        """The last seq of the aggregator's `epoch` that its dedup memory has written (0: none yet)."""
        db = self.dir / ".tickmesh" / "state" / "aggregator.db"
        if not db.exists():
            return 0
        with contextlib.closing(sqlite3.connect(db)) as conn:
            row = conn.execute("SELECT last_seq FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
        return int(row[0]) if row else 0

    def ring(self, last: int = 1_000) -> ReplayReply[Publication] | None:
        """The aggregator's replay ring (its `last` publications); None while no aggregator answers."""
        reply = ask_replay(self.ctx, self.endpoints.replay, ReplayRequest(last=last))
        return reply if isinstance(reply, ReplayReply) else None

    def remembered(self) -> bool:
        """The aggregator's dedup memory has written every id it published (up to 50 ms behind, by
        design): a kill -9 of it now publishes nothing twice. False while no aggregator answers."""
        reply = self.ring(last=1)
        if reply is None:
            return False
        newest = reply.publications[-1].seq if reply.publications else 0
        return self.recorded_end(reply.epoch) >= newest

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 6.0) -> int | None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def close(self) -> None:
        """Stop everything this mesh started, whatever state the test left it in."""
        for stop in self._closers:
            stop()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 6
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sock in self._sockets:
            sock.close(0)
        if self.status_pull is not None:
            self.status_pull.close(0)
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the bus, as the control process would see it ---------------------------------
    def listen_bus(self) -> None:
        self.status_pull = make_socket(self.ctx, zmq.PULL, bind=self.endpoints.control_status, hwm=10_000)

    def read_bus(self) -> dict[str, Status]:
        assert self.status_pull is not None
        while self.status_pull.poll(0):
            try:
                status = status_decoder.decode(self.status_pull.recv())
            except msgspec.DecodeError:
                continue
            self.statuses[status.process] = status
        return self.statuses

    def wait_reporting(self, names: Iterable[str], after_ns: int = 0, timeout: float = 15.0) -> dict[str, Status]:
        wanted = set(names)

        def all_reported() -> bool:
            for name, proc in self.procs.items():
                if proc.poll() is not None and name in wanted:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            statuses = self.read_bus()
            return all(n in statuses and statuses[n].time_ns > after_ns for n in wanted)

        poll_until(all_reported, timeout, what=f"status from {sorted(wanted)}")
        return self.statuses

    def counters(self, fresh: bool = True) -> dict[str, int]:
        """Counters summed over every process, from status reports sent after this call (if fresh)."""
        if fresh:
            self.wait_reporting(self.process_names(), after_ns=time.time_ns())
        total: dict[str, int] = {}
        for status in self.statuses.values():
            for key, value in status.counters.items():
                total[key] = total.get(key, 0) + value
        return total

    # -- clients ------------------------------------------------------------------------
    def producer(self) -> Producer:
        producer = Producer(self.ctx, self.endpoints, routers=self.config.router.count)
        self._sockets.extend(producer.pushes)
        return producer

    @contextlib.contextmanager
    def push_paced(self, records: list[Record], per: int = 100, every_s: float = 0.1) -> Iterator[None]:
        """Push `records`, `per` every `every_s` (1,000/s by default), from a thread until the block ends or
        they run out; then flush. Events flow while the block runs."""
        going = threading.Event()
        going.set()

        def push() -> None:
            producer = self.producer()
            for i in range(0, len(records), per):
                if not going.is_set():
                    break
                producer.send(records[i : i + per])
                time.sleep(every_s)  # pacing, not waiting for a signal
            producer.flush()

        pushing = threading.Thread(target=push)
        pushing.start()
        try:
            yield
        finally:
            going.clear()
            pushing.join()

    def stop_the_rest(self) -> None:
        """SIGTERM the routers and the supervisors, as honcho stops them after the aggregator: the workers flush."""
        for name in [name for name, _ in self.routers()] + [f"supervisor.{channel}" for channel in CHANNELS]:
            self.procs[name].send_signal(signal.SIGTERM)

    def push(self, records: list[Record]) -> None:
        """Send records and wait until the router has routed them (flush-and-acknowledge)."""
        producer = self.producer()
        for i in range(0, len(records), 1_000):
            producer.send(records[i : i + 1_000])
        producer.flush()

    def subscriber(self, ctx: zmq.Context | None = None, **kwargs: Any) -> Subscriber:  # type: ignore[type-arg]
        """A subscriber that is known to be receiving (it has seen a heartbeat)."""
        sub = Subscriber(self.endpoints.publish, replay=self.endpoints.replay, ctx=ctx or self.ctx, **kwargs)
        self._sockets.append(sub.sub)
        poll_until(lambda: sub.sub.poll(50), 10, what="the first heartbeat")
        return sub


def collect(sub: Subscriber, until: Callable[[list[Publication]], bool], timeout: float = 10.0) -> list[Publication]:
    """Receive publications until `until(received)` holds; fail after `timeout`."""
    received: list[Publication] = []
    deadline = time.monotonic() + timeout
    while not until(received):
        if time.monotonic() > deadline:
            kinds = [(p.event.__struct_config__.tag, p.event.ticker) for p in received]  # type: ignore[attr-defined]
            raise AssertionError(f"timed out; received {kinds}")
        publication = sub.recv(timeout_ms=100)
        if publication is not None:
            received.append(publication)
    return received


def drain(sub: Subscriber, quiet_ms: int = 500) -> list[Publication]:
    """Everything that arrives until nothing has for `quiet_ms`."""
    received = []
    while (publication := sub.recv(timeout_ms=quiet_ms)) is not None:
        received.append(publication)
    return received
