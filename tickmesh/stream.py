"""The stream protocol between the router and one worker shard, as two socket-free state machines.

A stream is one (channel, shard) of one router *epoch* (the router's start time):
records get consecutive sequence numbers from 0 as batches are formed. The
sender (router side) keeps every sent batch until its records are both
Delivered (the aggregator published their events) and Checkpointed (the
worker's state past them is durable), with at most `window` records in flight.
The receiver (worker side) processes each record once, asks for a resend when
it sees a hole (Gap), and starts every instance with Hello from its durable
position. Heartbeats (StreamState) let a receiver see a lost tail; acks are
cumulative and repeated every second (the worker's Checkpointed is its
heartbeat, the aggregator re-sends its last Delivered), so a lost ack never
holds a stream, and a receiver that falls silent is seen. A new router epoch
restarts the sequence; the receiver follows it (and its checkpoint position).

Sockets, clocks and encoding of the surrounding processes stay in the
adapters (router/app.py, workers/shard.py); every decision is made here, so
tests/unit/test_stream.py can drive both ends through lossy, reordering,
duplicating links and restarts.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from tickmesh.schema import Ack, Batch, Checkpointed, Delivered, Gap, Hello, StreamState, encoder

HEARTBEAT_NS = 1_000_000_000  # a quiet stream gets a StreamState this often; a worker beats as often
LIVENESS = 3  # heartbeats a worker may miss before it is silent (and another instance may take over)
RESEND_GAP_NS = 200_000_000  # the same resend is not repeated sooner (a flood of Hello/Gap costs little)
GAP_ASK_NS = 100_000_000  # a receiver asks again for a hole at most this often
STALE = "stale"  # on_ack's answer for an ack of an earlier epoch: expected after a restart, not an attack


class SenderStream:
    """The router's end of one stream: sequence, window, held batches, acks, liveness."""

    def __init__(self, channel: str, shard: int, epoch: int, window: int, now_ns: int) -> None:
        self.channel, self.shard, self.epoch, self.window = channel, shard, epoch, window
        self.next_seq = 0
        self.unacked: deque[tuple[int, int, bytes]] = deque()  # (first seq, count, encoded batch)
        self.in_flight = 0
        self.delivered = -1  # the aggregator has published the events of records up to here
        self.checkpointed = -1  # the worker's state up to here is durable
        self.worker = ""  # the worker instance that holds the stream
        self.heard_ns = now_ns  # a worker is given its liveness period to show up
        self.sent_ns = 0  # anything was last sent on this stream
        self.resent: tuple[str, int, int] = ("", -2, 0)  # (worker, after, when) of the last resend

    # -- sending ---------------------------------------------------------------------
    @property
    def room(self) -> int:
        """Records that may still be sent before the window is full."""
        return self.window - self.in_flight

    def batch(self, records: list[Any], ingest_ns: list[int], now_ns: int) -> bytes:
        """Sequence, encode and hold the next batch; its bytes to send."""
        batch = Batch(self.channel, self.shard, self.epoch, self.next_seq, self.retained_from, ingest_ns, records)
        data = encoder.encode(batch)
        self.unacked.append((self.next_seq, len(records), data))
        self.next_seq += len(records)
        self.in_flight += len(records)
        self.sent_ns = now_ns
        return data

    def heartbeat(self, now_ns: int, final: bool = False) -> bytes | None:
        """A StreamState to send when the stream has been quiet for a heartbeat (always when `final`)."""
        if not final and now_ns - self.sent_ns < HEARTBEAT_NS:
            return None
        self.sent_ns = now_ns
        state = StreamState(self.channel, self.shard, self.epoch, self.last_seq, self.retained_from, final)
        return encoder.encode(state)

    # -- acknowledgements ----------------------------------------------------------------
    def on_ack(self, ack: Ack, now_ns: int) -> tuple[str | None, list[tuple[int, bytes]]]:
        """Apply an ack: (why it was refused, or None; the held batches to send again)."""
        if isinstance(ack, Hello):
            return self._hello(ack, now_ns)
        if ack.epoch != self.epoch:  # epochs only grow: an older one is late (a router restart), not foreign
            return (STALE if ack.epoch < self.epoch else "future_epoch"), []
        if ack.seq > self.last_seq:
            return "beyond_sent", []
        if isinstance(ack, Delivered):
            self.delivered = max(self.delivered, ack.seq)
            self._release()
            return None, []
        if ack.sender != self.worker:
            if self.worker and not self.silent_worker(now_ns):
                return "not_the_worker", []
            self.worker = ack.sender  # the holder went silent (or the router restarted): this one takes over
        self.heard_ns = now_ns
        if isinstance(ack, Checkpointed):
            self.checkpointed = max(self.checkpointed, ack.seq)
            self._release()
        elif isinstance(ack, Gap):
            return None, self._resend(ack.sender, ack.seq, now_ns)
        return None, []

    def _hello(self, hello: Hello, now_ns: int) -> tuple[str | None, list[tuple[int, bytes]]]:
        """A worker instance starts holding the stream up to `seq` (of its epoch): it takes over."""
        if hello.epoch == self.epoch and hello.seq > self.last_seq:
            return "beyond_sent", []
        self.worker, self.heard_ns = hello.sender, now_ns
        return None, self._resend(hello.sender, hello.seq if hello.epoch == self.epoch else -1, now_ns)

    def _resend(self, worker: str, after: int, now_ns: int) -> list[tuple[int, bytes]]:
        """Every held batch with a record after `after`; nothing if the same was just resent."""
        last_worker, last_after, last_ns = self.resent
        if (last_worker, last_after) == (worker, after) and now_ns - last_ns < RESEND_GAP_NS:
            return []
        self.resent = (worker, after, now_ns)
        return [(n, data) for first, n, data in self.unacked if first + n - 1 > after]

    def resend_failed(self) -> None:
        """A resend could not be sent whole: the next request must not be taken for a repeat."""
        self.resent = ("", -2, 0)

    def _release(self) -> None:
        done = min(self.delivered, self.checkpointed)
        while self.unacked and self.unacked[0][0] + self.unacked[0][1] - 1 <= done:
            _, n, _ = self.unacked.popleft()
            self.in_flight -= n

    # -- state -----------------------------------------------------------------------------
    def silent_worker(self, now_ns: int) -> bool:
        """The worker has not been heard from for LIVENESS heartbeats."""
        return now_ns - self.heard_ns > LIVENESS * HEARTBEAT_NS

    @property
    def retained_from(self) -> int:
        return self.unacked[0][0] if self.unacked else self.next_seq

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def all_delivered(self) -> bool:
        return self.delivered >= self.last_seq


class ReceiverStream:
    """A worker's end of one stream: the next sequence wanted, holes, progress, checkpoint position."""

    def __init__(self, epoch: int = -1, position: int = -1) -> None:
        self.epoch = epoch
        self.expected = position + 1  # the next sequence number wanted
        self.checkpointed = position  # durable up to here (in `epoch`)
        self.reported = position  # progress last sent on to the aggregator
        self.retained_from = 0  # the router holds records from here: their events may be needed again
        self.ended = False  # the router's final StreamState was seen and nothing is missing
        self.gap_wanted = False
        self.last_gap_ns = 0

    @property
    def position(self) -> int:
        """The last sequence number processed."""
        return self.expected - 1

    def follow(self, message: Batch | StreamState) -> bool | None:
        """Note the message's epoch and what the router still holds: True if a new epoch began (a
        restarted router: the sequence starts over, and so does every position), None if the message
        is of an older epoch than the one followed (a late message of a router that is gone: ignore
        it; epochs only grow, router/app.py keeps them so across restarts), else False."""
        if message.epoch < self.epoch:
            return None
        new = message.epoch != self.epoch
        if new:
            self.epoch, self.expected, self.ended = message.epoch, message.retained_from, False
            self.checkpointed = self.reported = message.retained_from - 1
            self.retained_from = 0
        self.retained_from = max(self.retained_from, message.retained_from)
        return new

    def accept(self, batch: Batch) -> int | None:
        """The index of the batch's first record not yet processed, or None: a hole before it (a gap
        is wanted) or nothing new in it. The caller processes from there and calls `processed`."""
        if batch.seq > self.expected:
            self.gap_wanted = True
            return None
        skip = self.expected - batch.seq
        return skip if skip < len(batch.records) else None

    def processed(self, batch: Batch) -> None:
        self.expected = max(self.expected, batch.seq + len(batch.records))

    def on_state(self, state: StreamState) -> None:
        if state.last_seq >= self.expected:
            self.gap_wanted = True
        elif state.final:
            self.ended = True

    def ask_gap(self, now_ns: int) -> bool:
        """Whether to send a Gap now (one is wanted, and the last was long enough ago)."""
        if not self.gap_wanted or now_ns - self.last_gap_ns < GAP_ASK_NS:
            return False
        self.gap_wanted, self.last_gap_ns = False, now_ns
        return True

    def saved(self, seq: int) -> None:
        """The worker's state up to `seq` (of this epoch) is durable now."""
        self.checkpointed = max(self.checkpointed, seq)

    def checkpoint_due(self, now_ns: int, due_ns: int, window: int) -> bool:
        """Something to save, and its time (`due_ns`) has come or half the router's window waits
        on it (the router releases records only once they are checkpointed)."""
        behind = self.position - self.checkpointed
        return behind > 0 and (now_ns >= due_ns or behind >= window // 2)

    def ack(self, kind: type[Hello | Gap | Checkpointed], channel: str, shard: int, sender: str) -> bytes:
        """The encoded ack of this position (Checkpointed: of the checkpoint position)."""
        seq = self.checkpointed if kind is Checkpointed else self.position
        return encoder.encode(kind(channel, shard, max(self.epoch, 0), seq, sender))


def delivered(channel: str, shard: int, epoch: int, upto: int) -> bytes:
    """The aggregator's ack: the events of every record up to `upto` are published."""
    return encoder.encode(Delivered(channel, shard, epoch, upto, "aggregator"))
