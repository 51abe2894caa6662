"""The stream protocol's two state machines, alone and against each other over a hostile link."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tickmesh.schema import (
    Batch,
    Checkpointed,
    Delivered,
    Gap,
    Hello,
    Record,
    StreamState,
    Trade,
    ack_decoder,
    worker_input_decoder,
)
from tickmesh.stream import HEARTBEAT_NS, LIVENESS, RESEND_GAP_NS, STALE, ReceiverStream, SenderStream, delivered

MS = 1_000_000
T0 = 1_767_225_600_000_000_000


def trades(numbers: list[int]) -> list[Record]:
    """Record k of a test stream: a trade stamped T0 + k."""
    return [Trade("A", 1.0, 1, T0 + k) for k in numbers]


def sent(stream: SenderStream, n: int, now: int = 0) -> Batch:
    batch = worker_input_decoder.decode(stream.batch(trades(list(range(n))), [0] * n, now))
    assert isinstance(batch, Batch)
    return batch


def test_records_are_released_only_when_delivered_and_checkpointed() -> None:
    s = SenderStream("tick", 0, 5, window=10, now_ns=0)
    sent(s, 4), sent(s, 4)
    assert (s.room, s.retained_from, s.last_seq) == (2, 0, 7)
    assert s.on_ack(Delivered("tick", 0, 5, 5, "aggregator"), 0) == (None, [])
    assert s.room == 2
    assert s.on_ack(Checkpointed("tick", 0, 5, 5, "w"), 0) == (None, [])
    assert (s.room, s.retained_from, s.worker) == (6, 4, "w")


def test_acks_that_cannot_be_true_are_refused() -> None:
    s = SenderStream("tick", 0, 5, window=10, now_ns=0)
    sent(s, 3)
    assert s.on_ack(Checkpointed("tick", 0, 5, 9, "w"), 0)[0] == "beyond_sent"
    assert s.on_ack(Delivered("tick", 0, 5, 3, "aggregator"), 0)[0] == "beyond_sent"
    assert s.on_ack(Checkpointed("tick", 0, 4, 1, "w"), 0)[0] == STALE  # late, of an earlier router
    assert s.on_ack(Checkpointed("tick", 0, 6, 1, "w"), 0)[0] == "future_epoch"  # cannot be true
    assert s.on_ack(Hello("tick", 0, 5, 7, "w"), 0)[0] == "beyond_sent"
    assert s.on_ack(Hello("tick", 0, 5, 0, "w1"), 0)[0] is None  # w1 holds the stream now
    assert s.on_ack(Checkpointed("tick", 0, 5, 2, "w2"), 1)[0] == "not_the_worker"
    assert s.checkpointed == -1
    later = LIVENESS * HEARTBEAT_NS + 2  # w1 went silent: another instance may take over
    assert s.on_ack(Checkpointed("tick", 0, 5, 2, "w2"), later) == (None, []) and s.worker == "w2"


def test_a_flood_of_hellos_resends_once_per_resend_gap() -> None:
    s = SenderStream("tick", 0, 5, window=100, now_ns=0)
    for _ in range(10):
        sent(s, 10)
    assert len(s.on_ack(Hello("tick", 0, 5, -1, "w"), 0)[1]) == 10
    assert all(not s.on_ack(Hello("tick", 0, 5, -1, "w"), t * MS)[1] for t in range(1, 100))
    assert len(s.on_ack(Hello("tick", 0, 5, -1, "w"), RESEND_GAP_NS)[1]) == 10
    assert len(s.on_ack(Gap("tick", 0, 5, 55, "w"), RESEND_GAP_NS + 1)[1]) == 5  # another position: at once


def test_the_receiver_follows_a_new_epoch_with_every_position() -> None:
    r = ReceiverStream(epoch=1, position=251_463)  # a checkpoint of a previous router
    batch = Batch("tick", 0, 2, 0, 0, [0, 0], trades([1, 2]))
    assert r.follow(batch)
    assert (r.position, r.checkpointed, r.reported) == (-1, -1, -1)
    assert r.accept(batch) == 0
    r.processed(batch)
    assert r.checkpoint_due(now_ns=0, due_ns=10, window=4)  # half the window waits: due at once
    r.saved(1)
    assert not r.checkpoint_due(now_ns=100, due_ns=10, window=4)


def test_holes_are_asked_for_at_most_every_100_ms() -> None:
    r = ReceiverStream()
    r.follow(Batch("tick", 0, 2, 5, 0, [0], trades([1])))
    assert r.accept(Batch("tick", 0, 2, 5, 0, [0], trades([1]))) is None and r.gap_wanted
    assert r.ask_gap(200 * MS) and not r.ask_gap(201 * MS)
    r.on_state(StreamState("tick", 0, 2, 9, 0))
    assert not r.ask_gap(250 * MS) and r.ask_gap(301 * MS)
    assert ack_decoder.decode(r.ack(Gap, "tick", 0, "w")) == Gap("tick", 0, 2, -1, "w")
    assert ack_decoder.decode(r.ack(Checkpointed, "tick", 0, "w")) == Checkpointed("tick", 0, 2, -1, "w")


# -- both ends over a link that loses, duplicates and reorders, with restarts ------------------
@dataclass
class Worker:
    """A shard reduced to its stream: what it applied, and what of it is durable."""

    stream: ReceiverStream = field(default_factory=ReceiverStream)
    applied: list[tuple[int, int]] = field(default_factory=list)  # (epoch, record)
    durable: int = 0  # applied[:durable] survives a restart
    durable_at: tuple[int, int] = (-1, -1)  # (epoch, seq) of the checkpoint
    name: str = "w0"


class World:
    """Router stream + worker + aggregator acks, stepped by hypothesis-chosen actions."""

    def __init__(self, seed: int, records: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0
        self.epoch = 1
        self.sender = SenderStream("tick", 0, self.epoch, window=16, now_ns=0)
        self.todo = {self.epoch: list(range(records))}
        self.sent_of: dict[int, list[int]] = {self.epoch: []}
        self.down: list[bytes] = []  # router → worker
        self.up: list[bytes] = []  # worker/aggregator → router
        self.worker = Worker()
        self.restarts = 0
        self.lossy = True

    def step(self, action: int) -> None:
        self.now += 50 * MS
        [self.send, self.deliver_down, self.deliver_up, self.checkpoint, self.progress, self.beat][action % 6]()
        if self.lossy and action >= 6:
            self.hostile(action)

    def hostile(self, action: int) -> None:
        links = [self.down, self.up]
        link = links[action % 2]
        if not link:
            return
        k = self.rng.randrange(len(link))
        if action % 4 < 2:
            del link[k]  # lost
        else:
            link.append(link[k])  # duplicated (and so reordered)
        if action % 7 == 0:
            self.restart_worker()
        if action % 29 == 0:
            self.restart_router()

    def send(self) -> None:
        todo = self.todo[self.epoch]
        n = min(len(todo), self.sender.room, 1 + self.rng.randrange(4))
        if n > 0:
            batch = todo[:n]
            del todo[:n]
            self.sent_of[self.epoch] += batch
            self.down.append(self.sender.batch(trades(batch), [0] * n, self.now))
        if (state := self.sender.heartbeat(self.now)) is not None:
            self.down.append(state)

    def deliver_down(self) -> None:
        w = self.worker
        while self.down:
            message = worker_input_decoder.decode(self.down.pop(0))
            if w.stream.follow(message) is None:
                continue
            if isinstance(message, StreamState):
                w.stream.on_state(message)
                continue
            start = w.stream.accept(message)
            if start is not None:
                w.applied += [(message.epoch, r.timestamp - T0) for r in message.records[start:]]
                w.stream.processed(message)
        if w.stream.ask_gap(self.now):
            self.up.append(w.stream.ack(Gap, "tick", 0, w.name))

    def deliver_up(self) -> None:
        while self.up:
            _, resend = self.sender.on_ack(ack_decoder.decode(self.up.pop(0)), self.now)
            self.down += [data for _, data in resend]

    def checkpoint(self) -> None:
        w = self.worker
        if w.stream.position > w.stream.checkpointed:
            w.durable, w.durable_at = len(w.applied), (w.stream.epoch, w.stream.position)
            w.stream.saved(w.stream.position)
            self.up.append(w.stream.ack(Checkpointed, "tick", 0, w.name))

    def progress(self) -> None:
        """The aggregator published the events of everything the worker reported."""
        w = self.worker
        if w.stream.epoch >= 0 and w.stream.position >= 0:
            self.up.append(delivered("tick", 0, w.stream.epoch, w.stream.position))

    def beat(self) -> None:
        self.up.append(self.worker.stream.ack(Checkpointed, "tick", 0, self.worker.name))

    def restart_worker(self) -> None:
        """kill -9: what was not checkpointed is gone; the new instance says hello from its checkpoint."""
        old = self.worker
        self.restarts += 1
        epoch, seq = old.durable_at
        self.worker = Worker(ReceiverStream(epoch, seq), old.applied[: old.durable], old.durable, old.durable_at)
        self.worker.name = f"w{self.restarts}"
        self.up.append(self.worker.stream.ack(Hello, "tick", 0, self.worker.name))

    def restart_router(self) -> None:
        """A new epoch: what the old router held is gone with it (docs/state.md); new records follow."""
        self.epoch += 1
        self.sender = SenderStream("tick", 0, self.epoch, window=16, now_ns=self.now)
        self.todo[self.epoch] = list(range(1_000 * self.epoch, 1_000 * self.epoch + 20))
        self.sent_of[self.epoch] = []

    def heal(self) -> None:
        """No more loss: run until the current epoch is fully sent, processed and released."""
        self.lossy = False
        for _ in range(2_000):
            for action in range(6):
                self.step(action)
            s = self.sender
            if not self.todo[self.epoch] and not s.unacked and self.worker.stream.position == s.last_seq:
                return
        raise AssertionError(f"stalled: {vars(self.sender)} {vars(self.worker.stream)}")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.integers(0, 40), min_size=1, max_size=300))
def test_every_record_of_an_epoch_is_applied_exactly_once_and_nothing_stalls(seed: int, actions: list[int]) -> None:
    world = World(seed, records=60)
    for action in actions:
        world.step(action)
    world.heal()
    epoch = world.epoch
    applied = [r for e, r in world.worker.applied if e == epoch]
    assert applied == world.sent_of[epoch] == sorted(set(applied))
    assert len(applied) == (60 if epoch == 1 else 20)
