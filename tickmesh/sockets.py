"""Socket construction in one place: every socket gets an explicit HWM and linger."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import zmq

from tickmesh.security import private_dirs

log = logging.getLogger(__name__)
_warned: set[Path] = set()


def private_folder(folder: Path) -> None:
    """Create `folder` 0700 (tickmesh.security.private_dirs), so only the mesh's user can connect to
    the unix sockets in it; warn once if an existing one is open to others."""
    private_dirs(folder)
    if folder.stat().st_mode & 0o077 and folder not in _warned:
        _warned.add(folder)
        log.warning("%s is open to other users: any of them can connect to the mesh's sockets in it", folder)


class EndpointError(RuntimeError):
    """A socket could not bind or connect; the message names the endpoint."""


def make_socket(
    ctx: zmq.Context,  # type: ignore[type-arg]
    kind: int,
    *,
    bind: str | None = None,
    connect: str | None = None,
    hwm: int = 1_000,
    linger_ms: int = 0,
    immediate: bool = False,
) -> zmq.Socket:  # type: ignore[type-arg]
    """A socket bound to `bind` or connected to `connect`.

    `immediate` (ZMQ_IMMEDIATE) queues messages only to completed connections,
    so a send to a peer that is not there fails fast instead of piling up.
    On a context made by `tickmesh.curve.secure_context` with CURVE on, a tcp socket is
    a CURVE server (bind) or client (connect) before it binds or connects.
    """
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, linger_ms)
    if immediate:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    security = getattr(ctx, "security", None)  # set by tickmesh.curve.secure_context when CURVE is on
    if security is not None:
        try:
            security.secure(sock, bind=bind, connect=connect)
        except EndpointError:
            sock.close(0)
            raise
    try:
        if bind is not None:
            if bind.startswith("ipc://"):
                private_folder(Path(bind[len("ipc://") :]).parent)
            sock.bind(bind)
        if connect is not None:
            sock.connect(connect)
    except zmq.ZMQError as exc:
        sock.close(0)
        where = bind if bind is not None else connect
        raise EndpointError(f"cannot {'bind' if bind else 'connect'} {where}: {exc}") from None
    return sock


def monitor_event(monitor: zmq.Socket) -> tuple[int, int]:  # type: ignore[type-arg]
    """(event, value) of the next message on a socket monitor (zmq_socket_monitor's two frames:
    a 16-bit event and a 32-bit value, then the endpoint). It reads what
    `zmq.utils.monitor.recv_monitor_message` reads, without importing that module: it loads
    zmq.asyncio, and with it asyncio and ssl, about 8 MB of RSS in a process with no event loop."""
    head = monitor.recv_multipart()[0]
    event, value = struct.unpack("=hi", head[:6])
    return event, value
