"""The ingest contract from the producer's side: PUSH packed records, flush with an acknowledged mark.

With several routers (`[router] count`), records are partitioned by ticker as a Kafka
producer picks a partition: `router_of(ticker)` (tickmesh/sharding.py), so each ticker
always goes to the same router and keeps its order.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import zmq

from tickmesh.endpoints import Endpoints
from tickmesh.schema import Mark, MarkQuery, Record, encoder
from tickmesh.sharding import router_of
from tickmesh.sockets import make_socket


class FlushTimeout(RuntimeError):
    """The router did not acknowledge a mark in time (is it running?)."""


class Producer:
    """PUSHes records to the routers' ingest sockets (one PUSH per router).

    `send` blocks while a router applies backpressure (its ingest HWM is full),
    checking `should_stop` every 100 ms. `flush` sends a Mark to every router it
    sent records to since the last flush and waits until each says it has routed
    everything before it: the explicit flush-and-acknowledge that makes stopping
    lose nothing.
    """

    def __init__(
        self,
        ctx: zmq.Context,  # type: ignore[type-arg]
        endpoints: Endpoints,
        *,
        name: str | None = None,
        hwm: int = 10_000,
        should_stop: Callable[[], bool] = lambda: False,
        routers: int = 1,
    ) -> None:
        self.ctx, self.endpoints = ctx, endpoints
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
        self.should_stop = should_stop
        self.routers = [endpoints.for_router(i) for i in range(routers)]
        self.pushes = [make_socket(ctx, zmq.PUSH, connect=ep.ingest, hwm=hwm, linger_ms=1_000) for ep in self.routers]
        self.push = self.pushes[0]
        self.route: dict[str, int] = {}  # ticker → router, cached
        self.unflushed: set[int] = set()  # routers sent records since the last flush
        self.marks = 0
        self.sent_records = 0

    def frames(
        self, records: Sequence[Any], ticker_of: Callable[[Any], str] = attrgetter("ticker")
    ) -> list[tuple[int, bytes, int]]:
        """(router, packed frame, record count) per router the records go to, in router order.
        `ticker_of` reads a record's ticker (records already in their wire form: `itemgetter(1)`)."""
        if len(self.pushes) == 1:
            return [(0, encoder.encode(list(records)), len(records))]
        parts: dict[int, list[Any]] = {}
        route, n = self.route, len(self.pushes)
        for record in records:
            ticker = ticker_of(record)
            router = route.get(ticker)
            if router is None:
                router = route[ticker] = router_of(ticker, n)
            parts.setdefault(router, []).append(record)
        return [(r, encoder.encode(part), len(part)) for r, part in sorted(parts.items())]

    def send(self, records: Sequence[Record]) -> bool:
        """Send records, one packed message per router; False if stopped before all could be sent."""
        for router, frame, n in self.frames(records):
            if not self.send_raw(frame, router):
                return False
            self.sent_records += n
        return True

    def send_raw(self, frame: bytes, router: int = 0) -> bool:
        """Send one ingest frame as is to one router (for producers that encode themselves)."""
        push = self.pushes[router]
        self.unflushed.add(router)
        while True:
            try:
                push.send(frame, zmq.NOBLOCK)
                return True
            except zmq.Again:
                if self.should_stop():
                    return False
                push.poll(100, zmq.POLLOUT)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Return once every router sent records since the last flush (every router, if none) has
        routed them all (handed each to its worker's stream, or conflated/dropped by policy and
        counted); FlushTimeout if one does not or cannot."""
        self.marks += 1
        waiting = sorted(self.unflushed) or list(range(len(self.pushes)))
        mark = encoder.encode([Mark(self.name, self.marks)])
        for router in waiting:
            if not self.send_raw(mark, router):
                raise FlushTimeout("stopped before the mark could be sent")
        deadline = time.monotonic() + timeout_s
        query = encoder.encode(MarkQuery(self.name, self.marks))
        while time.monotonic() < deadline:
            waiting = [router for router in waiting if not self._routed(router, query)]
            if not waiting:
                self.unflushed.clear()
                return
            if self.should_stop():
                break
            time.sleep(0.01)
        where = ", ".join(self.routers[r].sync for r in waiting)
        raise FlushTimeout(f"router at {where} did not acknowledge mark {self.marks}")

    def _routed(self, router: int, query: bytes) -> bool:
        """Ask one router's sync socket whether the mark is routed (FlushTimeout if it refuses it)."""
        # Lazy Pirate: a fresh REQ per try, so a lost reply never wedges the socket.
        req = make_socket(self.ctx, zmq.REQ, connect=self.routers[router].sync, hwm=10)
        try:
            req.send(query)
            reply = req.recv() if req.poll(200) else b""
        finally:
            req.close(0)
        if reply == b"x":
            raise FlushTimeout(f"the router stopped before routing everything sent before mark {self.marks}")
        return reply == b"1"

    def close(self) -> None:
        for push in self.pushes:
            push.close()
