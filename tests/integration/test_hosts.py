"""Two "hosts" (network namespaces joined by a veth pair): the mesh over tcp with CURVE, and impostors kept out.

Host A (10.77.0.1) runs the router, the aggregator, the feed and a subscriber; host B
(10.77.0.2) runs the tick worker with only its own secret key and the servers' public
keys. The control bus is on ipc paths (a filesystem is shared by both namespaces), so
this test process reads every process's counters the way the control process would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import zmq

from tests.mesh import poll_until
from tickmesh.bus import Status, status_decoder
from tickmesh.config import to_toml
from tickmesh.security import SERVER_ROLES, public_key_path, secret_key_path
from tickmesh.sockets import make_socket

HOST_A, HOST_B = "10.77.0.1", "10.77.0.2"
PORTS = {"ingest": 5550, "sync": 5551, "acks": 5552, "tick": 5600, "ohlcv": 5700, "fmv": 5800}
PORTS |= {"events": 5590, "publish": 5591, "replay": 5592}

# Run on host A: three rising AAPL trades (two new highs), flushed through the router.
FEED = """
import sys, time
from tickmesh.config import load_config
from tickmesh.curve import secure_context
from tickmesh.producer import Producer
from tickmesh.schema import Trade
config = load_config(sys.argv[1])
ctx = secure_context(config, "feed")
producer = Producer(ctx, config.endpoints)
now = time.time_ns()
prices = [float(p) for p in sys.argv[2:]]
producer.send([Trade("AAPL", p, 100, now + 2 * i * 1_000_000_000) for i, p in enumerate(prices)])
producer.flush()
producer.close()
ctx.term()
"""

# Run on host B: three impostors PUSH valid trades to the router's ingest and keep retrying until killed.
IMPOSTORS = """
import sys, time, zmq
from tickmesh.schema import Trade, encoder
from tickmesh.security import read_public_key
from pathlib import Path
ingest, router_key, aggregator_key = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ctx = zmq.Context()
frame = encoder.encode([Trade("EVIL", 100.0 + i, 1, time.time_ns()) for i in range(3)])
for server_key in (read_public_key(router_key), read_public_key(aggregator_key), None):
    sock = ctx.socket(zmq.PUSH)
    if server_key is not None:  # a fresh keypair nobody authorized; with the aggregator's: the wrong server key
        public, secret = zmq.curve_keypair()
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_key
    sock.connect(ingest)
    for _ in range(5):
        sock.send(frame, zmq.NOBLOCK)
print("sent", flush=True)
time.sleep(60)
"""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Namespaces A and B joined by a veth pair (10.77.0.1/24 ↔ 10.77.0.2/24); always deleted."""
    if shutil.which("ip") is None:
        pytest.skip("needs the `ip` command (iproute2) to build network namespaces")
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces and a veth pair")
    tag = f"{os.getpid() % 100_000}"
    ns_a, ns_b, veth_a, veth_b = f"tm-a-{tag}", f"tm-b-{tag}", f"tmva{tag}", f"tmvb{tag}"
    steps = [
        ("netns", "add", ns_a),
        ("netns", "add", ns_b),
        ("link", "add", veth_a, "type", "veth", "peer", "name", veth_b),
        ("link", "set", veth_a, "netns", ns_a),
        ("link", "set", veth_b, "netns", ns_b),
        ("-n", ns_a, "addr", "add", f"{HOST_A}/24", "dev", veth_a),
        ("-n", ns_b, "addr", "add", f"{HOST_B}/24", "dev", veth_b),
        *((("-n", ns, "link", "set", dev, "up")) for ns, dev in ((ns_a, veth_a), (ns_b, veth_b))),
        *((("-n", ns, "link", "set", "lo", "up")) for ns in (ns_a, ns_b)),
    ]
    try:
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                pytest.skip(f"cannot build network namespaces (`ip {' '.join(step)}`: {done.stderr.strip()})")
        yield ns_a, ns_b
    finally:
        for ns in (ns_a, ns_b):  # deleting a namespace also deletes its end of the veth pair
            _ip("netns", "del", ns)
        _ip("link", "del", veth_a)  # in case it never moved into a namespace


class Hosts:
    """Processes in the two namespaces, their logs, and the control bus as this test process sees it."""

    def __init__(self, ns_a: str, ns_b: str) -> None:
        self.ns = {"A": ns_a, "B": ns_b}
        self.dir = Path(tempfile.mkdtemp(prefix="tm-hosts-"))  # short: ipc paths live here
        self.keys = {"A": self.dir / "keys-a", "B": self.dir / "keys-b"}
        self.config_path = self.dir / "tickmesh.toml"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ctx = zmq.Context()
        self.status: zmq.Socket | None = None  # type: ignore[type-arg]
        self.statuses: dict[str, Status] = {}

    def write_config(self) -> None:
        endpoints = {name: f"tcp://{HOST_A}:{port}" for name, port in PORTS.items()}
        endpoints |= {"control_config": f"ipc://{self.dir}/config", "control_status": f"ipc://{self.dir}/status"}
        self.config_path.write_text(
            to_toml(
                {
                    "endpoints": endpoints,  # security.curve stays "auto": non-loopback tcp turns CURVE on
                    "aggregator": {"heartbeat_s": 0.2},
                    "control": {"status_interval_s": 0.2},
                }
            )
        )

    def make_keys(self) -> None:
        """All keys on host A (with `tickmesh-keys create`); host B gets the worker's secret and public keys only."""
        done = subprocess.run(
            [sys.executable, "-m", "tickmesh.keys", "create", "--dir", str(self.keys["A"])],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        self.keys["B"].mkdir(mode=0o700)
        for role in (*SERVER_ROLES, "worker"):
            shutil.copy(public_key_path(self.keys["A"], role), self.keys["B"])
        shutil.copy(secret_key_path(self.keys["A"], "worker"), self.keys["B"])  # copy keeps 0600

    def spawn(self, name: str, host: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, PYTHONUNBUFFERED="1", TICKMESH_KEYS_DIR=str(self.keys[host]))
        command = ["ip", "netns", "exec", self.ns[host], sys.executable, *args]
        proc = subprocess.Popen(command, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def run(self, name: str, host: str, *args: str, timeout: float = 30) -> str:
        """Run a program on a host to its end; its output (the test fails if it fails)."""
        proc = self.spawn(name, host, *args)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not finish:\n{self.log(name)}") from None
        assert code == 0, f"{name} exited with {code}:\n{self.log(name)}"
        return self.log(name)

    def listen_bus(self) -> None:
        self.status = make_socket(self.ctx, zmq.PULL, bind=f"ipc://{self.dir}/status", hwm=10_000)

    def read_bus(self) -> dict[str, Status]:
        assert self.status is not None
        while self.status.poll(0):
            try:
                status = status_decoder.decode(self.status.recv())
            except msgspec.DecodeError:
                continue
            self.statuses[status.process] = status
        return self.statuses

    def counters(self, process: str, after_ns: int = 0, **wanted: int) -> dict[str, int]:
        """A process's counters from a report sent after `after_ns` in which each `wanted` (dots as __) is reached."""

        def check() -> dict[str, int]:
            for name, proc in self.procs.items():
                if proc.poll() not in (None, 0):
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            status = self.read_bus().get(process)
            if status is None or status.time_ns <= after_ns:
                return {}
            counts = status.counters
            return counts if all(counts.get(k.replace("__", "."), 0) >= n for k, n in wanted.items()) else {}

        return poll_until(check, 20, what=f"{process} to report {wanted} (last: {self.statuses.get(process)})")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(8)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.status is not None:
            self.status.close(0)
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def hosts(namespaces: tuple[str, str]) -> Iterator[Hosts]:
    hosts = Hosts(*namespaces)
    try:
        hosts.write_config()
        hosts.make_keys()
        hosts.listen_bus()
        yield hosts
    finally:
        for name in hosts.procs:  # shown by pytest only when the test failed
            print(f"----- {name} log -----\n{hosts.log(name)[-4000:]}")
        hosts.close()


def test_a_worker_on_another_host_over_curve_and_impostors_kept_out(hosts: Hosts) -> None:
    config = str(hosts.config_path)
    hosts.spawn("router", "A", "-m", "router", "--config", config)
    hosts.spawn("aggregator", "A", "-m", "aggregator", "--config", config)
    hosts.spawn("worker", "B", "-m", "workers", "tick", "--config", config)
    for process in ("router", "aggregator", "worker.tick.0"):
        hosts.counters(process)
    subscriber = hosts.spawn(
        "subscriber", "A", "-m", "subscriber", "--json", "--count", "2", "--last", "10", "--config", config
    )
    hosts.counters("aggregator", replay__requests=1)  # the subscriber is up: it asked for the last events

    hosts.run("feed", "A", "-c", FEED, config, "100.0", "100.5", "101.0")
    try:
        subscriber.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the subscriber did not get 2 events:\n{hosts.log('subscriber')}") from None
    events = [json.loads(line) for line in hosts.log("subscriber").splitlines() if line.startswith("{")]
    assert [(e["kind"], e["source"], e["ticker"], e["price"]) for e in events] == [
        ("high", "tick", "AAPL", 100.5),
        ("high", "tick", "AAPL", 101.0),
    ]
    worker = hosts.counters("worker.tick.0", tick__processed=3, security__handshakes=3)  # data, events, acks
    router = hosts.counters("router", tick__routed=3)
    aggregator = hosts.counters("aggregator", published=2)
    for counts in (worker, router, aggregator):
        assert not any(k.startswith("security.handshake_failed") or k == "security.denied" for k in counts), counts

    hosts.spawn(
        "impostors",
        "B",
        "-c",
        IMPOSTORS,
        f"tcp://{HOST_A}:{PORTS['ingest']}",
        str(public_key_path(hosts.keys["B"], "router")),
        str(public_key_path(hosts.keys["B"], "aggregator")),
    )
    router = hosts.counters("router", security__denied=1, security__handshake_failed__crypto=3)
    no_curve = router.get("security.handshake_failed.mechanism", 0) + router.get("security.handshake_failed.other", 0)
    assert no_curve >= 1, router
    assert router["tick.received"] == 3, router  # not one of the impostors' 45 trades got in

    before = hosts.statuses["router"].time_ns
    hosts.run("feed-2", "A", "-c", FEED, config, "101.5")  # flushed: routed before the router reports again
    router = hosts.counters("router", after_ns=before, tick__routed=4)
    assert router["tick.received"] == 4 and not any(k.startswith("ingest.rejected") for k in router), router
    assert hosts.counters("worker.tick.0", tick__processed=4)
