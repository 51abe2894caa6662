"""The ingest contract from the producer's side: PUSH packed records, flush with an acknowledged mark."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence

import zmq

from tickmesh.endpoints import Endpoints
from tickmesh.schema import Mark, MarkQuery, Record, encoder
from tickmesh.sockets import make_socket


class FlushTimeout(RuntimeError):
    """The router did not acknowledge a mark in time (is it running?)."""


class Producer:
    """PUSHes records to the router's ingest socket.

    `send` blocks while the router applies backpressure (its ingest HWM is full),
    checking `should_stop` every 100 ms. `flush` sends a Mark and waits until the
    router says it has routed everything before it: the explicit
    flush-and-acknowledge that makes stopping lose nothing.
    """

    def __init__(
        self,
        ctx: zmq.Context,  # type: ignore[type-arg]
        endpoints: Endpoints,
        *,
        name: str | None = None,
        hwm: int = 10_000,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.ctx, self.endpoints = ctx, endpoints
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
        self.should_stop = should_stop
        self.push = make_socket(ctx, zmq.PUSH, connect=endpoints.ingest, hwm=hwm, linger_ms=1_000)
        self.marks = 0
        self.sent_records = 0

    def send(self, records: Sequence[Record]) -> bool:
        """Send records as one packed message; False if stopped before it could be sent."""
        ok = self.send_raw(encoder.encode(list(records)))
        if ok:
            self.sent_records += len(records)
        return ok

    def send_raw(self, frame: bytes) -> bool:
        """Send one ingest frame as is (for producers that encode themselves)."""
        while True:
            try:
                self.push.send(frame, zmq.NOBLOCK)
                return True
            except zmq.Again:
                if self.should_stop():
                    return False
                self.push.poll(100, zmq.POLLOUT)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Return once the router has routed every record sent so far (handed each to its worker's
        stream, or conflated/dropped by policy and counted); FlushTimeout if it does not or cannot."""
        self.marks += 1
        if not self.send_raw(encoder.encode([Mark(self.name, self.marks)])):
            raise FlushTimeout("stopped before the mark could be sent")
        deadline = time.monotonic() + timeout_s
        query = encoder.encode(MarkQuery(self.name, self.marks))
        while time.monotonic() < deadline:
            # Lazy Pirate: a fresh REQ per try, so a lost reply never wedges the socket.
            req = make_socket(self.ctx, zmq.REQ, connect=self.endpoints.sync, hwm=10)
            try:
                req.send(query)
                reply = req.recv() if req.poll(200) else b""
                if reply == b"1":
                    return
                if reply == b"x":
                    raise FlushTimeout(f"the router stopped before routing everything sent before mark {self.marks}")
            finally:
                req.close(0)
            if self.should_stop():
                break
            time.sleep(0.01)
        raise FlushTimeout(f"router at {self.endpoints.sync} did not acknowledge mark {self.marks}")

    def close(self) -> None:
        self.push.close()
