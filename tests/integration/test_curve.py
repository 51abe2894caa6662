"""CURVE on loopback tcp, sockets made by make_socket: known keys get through, nobody else does, all counted."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from tests.mesh import free_port, ipc_endpoints, poll_until
from tickmesh import keys
from tickmesh.bus import BusClient, status_decoder
from tickmesh.config import Config, SecurityConfig, to_toml
from tickmesh.curve import SecurityError, secure_context, security_counters
from tickmesh.endpoints import Endpoints
from tickmesh.metrics import Metrics
from tickmesh.security import ROLES, public_key_path, read_public_key, secret_key_path
from tickmesh.sockets import make_socket

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    keys.create(folder, ROLES)
    return folder


class Sockets:
    """Contexts and sockets a test made; all closed at teardown, whatever happened."""

    def __init__(self) -> None:
        self.contexts: list[Any] = []
        self.sockets: list[zmq.Socket] = []  # type: ignore[type-arg]

    def context(self, config: Config | None = None, role: str = "") -> Any:
        ctx = secure_context(config, role) if config is not None else zmq.Context()
        self.contexts.append(ctx)
        return ctx

    def make(self, ctx: Any, kind: int, **kwargs: Any) -> zmq.Socket:  # type: ignore[type-arg]
        sock = make_socket(ctx, kind, **kwargs)
        self.sockets.append(sock)
        return sock

    def impostor(self, kind: int, endpoint: str, *, server_key: bytes | None) -> zmq.Socket:  # type: ignore[type-arg]
        """A socket set up by hand: CURVE with a fresh (unknown) keypair, or no CURVE at all."""
        sock = self.context().socket(kind)
        self.sockets.append(sock)
        sock.setsockopt(zmq.LINGER, 0)
        if server_key is not None:
            public, secret = zmq.curve_keypair()
            sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
            sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
        sock.connect(endpoint)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(0)
        for ctx in self.contexts:
            ctx.term()


@pytest.fixture
def made() -> Iterator[Sockets]:
    sockets = Sockets()
    yield sockets
    sockets.close()


def curve_config(keys_dir: Path, **endpoints: str) -> Config:
    return Config(
        endpoints=msgspec.structs.replace(Endpoints(), **endpoints),
        security=SecurityConfig(curve="on", keys_dir=str(keys_dir)),
    )


def public(keys_dir: Path, role: str) -> bytes:
    return read_public_key(public_key_path(keys_dir, role))


def counter_grows(ctx: Any, names: tuple[str, ...], before: dict[str, int], by: int = 1) -> dict[str, int]:
    """The context's security counters once the sum of `names` has grown by `by` since `before`."""

    def total(counts: dict[str, int]) -> int:
        return sum(counts.get(name, 0) for name in names)

    def grown() -> dict[str, int]:
        counts = security_counters(ctx)
        return counts if total(counts) >= total(before) + by else {}

    return poll_until(grown, 10, what=f"{names} to grow by {by} from {before}")


DENIED = ("security.denied",)
CRYPTO = ("security.handshake_failed.crypto",)
# A peer without CURVE: whichever side reads the other's greeting first ends the handshake.
NO_CURVE = ("security.handshake_failed.mechanism", "security.handshake_failed.other")


def test_only_known_keys_deliver_and_every_refusal_is_counted(keys_dir: Path, made: Sockets) -> None:
    config = curve_config(keys_dir, ingest=f"tcp://127.0.0.1:{free_port()}")
    router = made.context(config, "router")
    pull = made.make(router, zmq.PULL, bind=config.endpoints.ingest)
    feed = made.make(made.context(config, "feed"), zmq.PUSH, connect=config.endpoints.ingest)
    feed.send(b"good-1")
    assert pull.poll(5_000) and pull.recv() == b"good-1"

    impostors = [
        ("unknown-key", public(keys_dir, "router"), DENIED, 1),
        ("wrong-server-key", public(keys_dir, "aggregator"), CRYPTO, 3),  # it retries: each attempt is counted
        ("no-curve", None, NO_CURVE, 1),
    ]
    for name, server_key, counters, attempts in impostors:
        before = security_counters(router)
        sock = made.impostor(zmq.PUSH, config.endpoints.ingest, server_key=server_key)
        for i in range(5):  # they all "succeed": queued for a connection that never completes
            sock.send(f"bad-{name}-{i}".encode(), zmq.NOBLOCK)
        counter_grows(router, counters, before, attempts)
    counts = security_counters(router)
    assert counts["security.handshakes"] == 1  # only the feed's
    assert counts["security.handshake_failed.auth"] == counts["security.denied"] == 1

    feed.send(b"good-2")
    received: list[bytes] = []
    while not received or received[-1] != b"good-2":
        assert pull.poll(5_000), f"good-2 never arrived; got {received}"
        received.append(pull.recv())
    assert received == [b"good-2"] and not pull.poll(200)


def test_impostors_connecting_to_a_bound_push_receive_nothing(keys_dir: Path, made: Sockets) -> None:
    config = curve_config(keys_dir, tick=f"tcp://127.0.0.1:{free_port()}")
    router = made.context(config, "router")
    endpoint = config.endpoints.shard("tick", 0)
    push = made.make(router, zmq.PUSH, bind=endpoint, immediate=True)
    thieves = [
        made.impostor(zmq.PULL, endpoint, server_key=public(keys_dir, "router")),
        made.impostor(zmq.PULL, endpoint, server_key=None),
    ]
    counter_grows(router, DENIED + NO_CURVE, {}, 2)
    assert not push.poll(100, zmq.POLLOUT)  # IMMEDIATE: no completed connection to send to
    worker = made.make(made.context(config, "worker"), zmq.PULL, connect=endpoint)
    poll_until(lambda: push.poll(0, zmq.POLLOUT), 10, what="the worker's connection")
    for i in range(20):  # PUSH round-robins over completed connections: a thief would take some
        push.send(b"%d" % i)
    got = []
    for _ in range(20):
        assert worker.poll(5_000)
        got.append(worker.recv())
    assert got == [b"%d" % i for i in range(20)]
    assert not any(t.poll(100) for t in thieves)


def test_missing_keys_and_unknown_endpoints_are_named(keys_dir: Path, made: Sockets) -> None:
    config = curve_config(keys_dir, ingest=f"tcp://127.0.0.1:{free_port()}")
    feed = made.context(config, "feed")
    with pytest.raises(SecurityError, match=r"tcp://127\.0\.0\.1:1 is not one of the configured endpoints"):
        made.make(feed, zmq.PUSH, connect="tcp://127.0.0.1:1")
    public_key_path(keys_dir, "router").unlink()
    with pytest.raises(SecurityError, match=rf"{keys_dir}/router\.key: public key file missing"):
        made.make(feed, zmq.PUSH, connect=config.endpoints.ingest)
    secret_key_path(keys_dir, "worker").unlink()
    with pytest.raises(SecurityError, match=rf"{keys_dir}/worker\.key_secret: secret key file missing"):
        made.make(made.context(config, "worker"), zmq.PULL, connect=config.endpoints.ingest)
    ipc = made.make(made.context(config, "worker"), zmq.PULL, connect=f"ipc://{keys_dir}/x")  # ipc stays plain
    assert ipc.getsockopt(zmq.MECHANISM) == zmq.NULL


def test_the_bus_reports_security_counters(keys_dir: Path, made: Sockets) -> None:
    config = curve_config(
        keys_dir,
        control_config=f"tcp://127.0.0.1:{free_port()}",
        control_status=f"tcp://127.0.0.1:{free_port()}",
    )
    control = made.context(config, "control")
    status = made.make(control, zmq.PULL, bind=config.endpoints.control_status)
    made.make(control, zmq.PUB, bind=config.endpoints.control_config)
    worker = made.context(config, "worker")
    bus = BusClient(worker, config, process="worker.tick.0", role="worker", channels=["tick"], metrics=Metrics())
    made.sockets += [bus.sub, bus.push]

    def reported() -> dict[str, int]:
        bus.report(force=True)
        while status.poll(20):
            counters = status_decoder.decode(status.recv()).counters
            if counters.get("security.handshakes", 0) >= 2:  # the worker's two bus sockets
                return counters
        return {}

    counters = poll_until(reported, 10, what="a status with the worker's handshakes")
    assert not any(k.startswith("security.handshake_failed") for k in counters)


def test_an_asyncio_context_binds_with_curve(keys_dir: Path, made: Sockets) -> None:
    config = curve_config(keys_dir, control_status=f"tcp://127.0.0.1:{free_port()}")

    async def serve() -> bytes:
        ctx = secure_context(config, "control", asyncio=True)
        pull = make_socket(ctx, zmq.PULL, bind=config.endpoints.control_status)
        push = made.make(made.context(config, "router"), zmq.PUSH, connect=config.endpoints.control_status)
        push.send(b"status")
        try:
            return await asyncio.wait_for(pull.recv(), 5)  # type: ignore[arg-type]
        finally:
            pull.close(0)
            ctx.term()

    assert asyncio.run(serve()) == b"status"


@pytest.mark.parametrize("problem", ["open", "missing"])
def test_the_router_refuses_to_start_with_a_bad_secret_key(keys_dir: Path, tmp_path: Path, problem: str) -> None:
    secret = secret_key_path(keys_dir, "router")
    if problem == "open":
        secret.chmod(0o644)
    else:
        secret.unlink()
    path = tmp_path / "tickmesh.toml"
    folder = tempfile.mkdtemp(prefix="tm-")  # ipc paths must be short
    endpoints = ipc_endpoints(folder) | {"ingest": f"tcp://127.0.0.1:{free_port()}"}
    path.write_text(to_toml({"endpoints": endpoints, "security": {"curve": "on", "keys_dir": str(keys_dir)}}))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "router", "--config", str(path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the router did not refuse to start: {exc.stderr!r}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert proc.returncode == 4, proc.stderr  # EXIT_AUTH: a CURVE key problem
    expected = "chmod 600" if problem == "open" else "secret key file missing"
    assert f"{secret}" in proc.stderr and expected in proc.stderr, proc.stderr
