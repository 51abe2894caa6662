"""Per-browser outboxes: bounded event queues that drop and count, and a conflated mesh snapshot slot."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

Message = dict[str, Any]


class Outbox:
    """What one browser has yet to receive. Events beyond `capacity` are dropped and counted, so a
    slow or backgrounded tab costs the mesh nothing; the mesh snapshot keeps only the newest."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.events: deque[Message] = deque()
        self.mesh: Message | None = None
        self.replies: deque[Message] = deque(maxlen=64)  # answers to this browser's own requests
        self.dropped = 0  # since the last "dropped" marker was sent
        self.dropped_total = 0
        self.sent = 0
        self.ready = asyncio.Event()

    def put_events(self, events: Iterable[Message]) -> None:
        for event in events:
            if len(self.events) >= self.capacity:
                self.dropped += 1
                self.dropped_total += 1
            else:
                self.events.append(event)
        self.ready.set()

    def put_mesh(self, snapshot: Message) -> None:
        self.mesh = snapshot
        self.ready.set()

    def put_reply(self, reply: Message) -> None:
        self.replies.append(reply)
        self.ready.set()

    def take(self, limit: int = 500) -> list[Message]:
        """The next messages to send: replies, the mesh snapshot, a batch of events; then, once the
        queue has drained, one marker saying how many events were dropped."""
        out: list[Message] = list(self.replies)
        self.replies.clear()
        if self.mesh is not None:
            out.append(self.mesh)
            self.mesh = None
        if self.events:
            batch = [self.events.popleft() for _ in range(min(limit, len(self.events)))]
            self.sent += len(batch)
            out.append({"type": "events", "events": batch})
        if self.dropped and not self.events:
            out.append({"type": "dropped", "count": self.dropped})
            self.dropped = 0
        if not self.events and not self.replies and self.mesh is None:
            self.ready.clear()
        return out

    def stats(self) -> Message:
        return {"queued": len(self.events), "capacity": self.capacity, "dropped": self.dropped_total, "sent": self.sent}


class Fanout:
    """Every connected browser's outbox; publishing never waits for any of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.outboxes: set[Outbox] = set()
        self.mesh: Message | None = None

    def join(self) -> Outbox:
        outbox = Outbox(self.capacity)
        if self.mesh is not None:
            outbox.put_mesh(self.mesh)
        self.outboxes.add(outbox)
        return outbox

    def leave(self, outbox: Outbox) -> None:
        self.outboxes.discard(outbox)

    def publish_events(self, events: list[Message]) -> None:
        for outbox in self.outboxes:
            outbox.put_events(events)

    def publish_mesh(self, snapshot: Message) -> None:
        self.mesh = snapshot
        for outbox in self.outboxes:
            outbox.put_mesh(snapshot)

    def stats(self) -> list[Message]:
        return [outbox.stats() for outbox in self.outboxes]
