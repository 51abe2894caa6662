"""One router's stream as a worker shard holds it: its two sockets, protocol state, and the events it owes."""

from __future__ import annotations

import time
from collections import deque

import zmq

from tickmesh.config import Config
from tickmesh.schema import Checkpointed, Event, Gap, Hello
from tickmesh.sockets import make_socket
from tickmesh.stream import ReceiverStream
from workers.store import Position


class Link:
    """A shard's end of router `router`'s stream: records in (PULL), acks out (PUSH), and the events of
    its records that were sent (`recent`, until the router lets go of those records) or are not yet
    sent (`pending`). A shard has one Link per router (`[router] count`)."""

    def __init__(self, ctx: zmq.Context, config: Config, channel: str, shard: int, router: int) -> None:  # type: ignore[type-arg]
        ep = config.endpoints.for_router(router)
        self.router = router
        self.where = ep.shard(channel, shard)
        self.data = make_socket(ctx, zmq.PULL, connect=self.where, hwm=config.channel(channel).hwm)
        try:
            # IMMEDIATE: nothing is queued for a router that is not connected (yet, or any more)
            self.acks = make_socket(ctx, zmq.PUSH, connect=ep.acks, hwm=1_000, linger_ms=500, immediate=True)
        except Exception:
            self.data.close(0)
            raise
        self.stream = ReceiverStream()
        self.recent: deque[Event] = deque()
        self.pending: list[Event] = []
        self.last_progress_ns = self.last_beat_ns = 0
        self.heard_ns, self.ack_unsent = 0, False  # the router's last message; the last ack failed (readiness)

    def restore(self, position: Position) -> None:
        """Resume from a checkpoint: its position, and its events to send again."""
        self.stream = ReceiverStream(position.epoch, position.seq)
        self.pending = list(position.events)

    def position(self) -> Position:
        """What a checkpoint keeps of this stream."""
        return Position(self.stream.epoch, self.stream.position, [*self.recent, *self.pending])

    def retain(self) -> None:
        """Forget sent events of records the router has released: they were delivered."""
        while self.recent and self.recent[0].record_seq < self.stream.retained_from:
            self.recent.popleft()

    def progress_due(self, now_ns: int, linger_ns: int, every_ns: int, window: int) -> bool:
        """A report is due: events wait and the last report is `linger_ns` old, or processed records are
        unreported and it is `every_ns` old, or a quarter of the router's `window` is unreported (the
        router holds them until it hears)."""
        unreported = self.stream.position - self.stream.reported
        age = now_ns - self.last_progress_ns
        return (bool(self.pending) and age >= linger_ns) or (
            unreported > 0 and (age >= every_ns or unreported >= window // 4)
        )

    def ack(self, kind: type[Hello | Gap | Checkpointed], channel: str, shard: int, sender: str) -> bool:
        """Send an ack of this stream's position to its router; False (and counted by the caller) if it could not go."""
        self.last_beat_ns = time.monotonic_ns()
        try:
            self.acks.send(self.stream.ack(kind, channel, shard, sender), zmq.NOBLOCK)
            self.ack_unsent = False
        except zmq.Again:
            self.ack_unsent = True
        return not self.ack_unsent

    def close(self) -> None:
        self.data.close()
        self.acks.close()
