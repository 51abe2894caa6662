"""Liveness and readiness for an orchestrator's probes: `GET /livez` and `GET /readyz` on `--health HOST:PORT`.

The process's loop publishes plain values (when it last turned, why it is not
ready) that a stdlib HTTP server (tickmesh/probes.py) reads in its own daemon
thread: a probe never touches a zmq socket (sockets are not thread-safe) nor
waits for the loop. The server is imported only when a process serves probes:
http.server loads ssl, about 5 MB of RSS a process without probes need not carry.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import TYPE_CHECKING

from tickmesh.sockets import EndpointError

if TYPE_CHECKING:
    from tickmesh.probes import ProbeServer

log = logging.getLogger(__name__)

STALE_S = 5.0  # /livez fails when the loop has not turned for this long (loops turn at least every 0.1 s)
HEALTH_ENV = "TICKMESH_HEALTH"


class Health:
    """What a loop publishes for its probes: a stamp per turn, and why it is not ready ("" when it is)."""

    def __init__(self, stale_s: float = STALE_S) -> None:
        self.stale_s = stale_s
        self.turned = time.monotonic()
        self.not_ready = "starting"

    def turn(self) -> None:
        self.turned = time.monotonic()

    def ready(self, why_not: str = "") -> None:
        """Ready when `why_not` is empty; else not ready, for that reason (the body of a 503)."""
        self.not_ready = why_not

    def live(self) -> tuple[bool, str]:
        age = time.monotonic() - self.turned
        if age > self.stale_s:
            return False, f"loop has not turned for {age:.1f} s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        live, why = self.live()
        if not live:
            return False, why
        reason = self.not_ready
        return not reason, reason or "ok"


def split_address(address: str) -> tuple[str, int]:
    """("127.0.0.1", 8080) for "127.0.0.1:8080" or ":8080" (loopback); IPv6 in brackets."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise EndpointError(f"health address {address!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def health_address(text: str) -> str:
    """An argparse type: HOST:PORT, checked (a default from the environment is checked too)."""
    try:
        split_address(text)
    except EndpointError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def start_probes(address: str, health: Health) -> ProbeServer:
    """Serve `health` on `address` from a daemon thread; EndpointError if it cannot bind."""
    from tickmesh.probes import ProbeServer

    try:
        server = ProbeServer(split_address(address), health)
    except OSError as exc:
        raise EndpointError(f"cannot bind health endpoint {address}: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="health probes", daemon=True).start()
    host, port = server.server_address[:2]
    log.info("health probes on http://%s:%s/livez and /readyz", host, port)
    return server


def stop_probes(server: ProbeServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
