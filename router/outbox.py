"""One (channel, shard) stream: records waiting to be batched, sequence numbers, unacknowledged batches."""

from __future__ import annotations

from collections import deque

from tickmesh.config import ChannelConfig
from tickmesh.schema import Batch, Record, encoder

# A batch_size-1 channel coalesces at most this many waiting records into one message.
COALESCE_MAX = 1_024


class Outbox:
    """Batches records for one worker stream and keeps what was sent until the worker acknowledges it.

    Sequence numbers are given when a batch is formed, so conflated or dropped
    records never open a gap the worker would have to ask about. At most
    `window` records are in flight (sent, not acknowledged): past that the
    records wait here, and past `config.buffer` the overflow policy applies.
    """

    def __init__(self, channel: str, shard: int, epoch: int, config: ChannelConfig, window: int) -> None:
        self.channel, self.shard, self.epoch, self.window = channel, shard, epoch, window
        self.config = config
        self.records: list[Record] = []
        self.ingest_ns: list[int] = []
        self.first_ns = 0  # monotonic ns when the oldest waiting record arrived
        self.next_seq = 0
        self.unacked: deque[tuple[int, int, bytes]] = deque()  # (first seq, count, encoded batch)
        self.in_flight = 0
        self.delivered = -1  # the aggregator has published the events of records up to here
        self.checkpointed = -1  # the worker's state up to here is on disk
        self.worker = ""  # the worker instance heard from last
        self.heard_ns = 0  # monotonic ns the worker was last heard from
        self.sent_ns = 0  # monotonic ns anything was last sent on this stream

    # -- records in ------------------------------------------------------------
    def add(self, record: Record, ingest_ns: int, now_ns: int) -> None:
        if not self.records:
            self.first_ns = now_ns
        self.records.append(record)
        self.ingest_ns.append(ingest_ns)

    def add_many(self, records: list[Record], ingest_ns: int, now_ns: int) -> None:
        """Records of one ingest frame at once (one stamp: they arrived together)."""
        if not self.records:
            self.first_ns = now_ns
        self.records.extend(records)
        self.ingest_ns.extend([ingest_ns] * len(records))

    @property
    def full(self) -> bool:
        return len(self.records) >= self.config.buffer

    def conflate(self) -> int:
        """Keep only the newest waiting record per ticker; how many were removed."""
        newest: dict[str, int] = {}
        for i, record in enumerate(self.records):
            newest[record.ticker] = i
        keep = sorted(newest.values())
        removed = len(self.records) - len(keep)
        self.records = [self.records[i] for i in keep]
        self.ingest_ns = [self.ingest_ns[i] for i in keep]
        return removed

    def drop_oldest(self, n: int) -> int:
        n = min(n, len(self.records))
        del self.records[:n]
        del self.ingest_ns[:n]
        return n

    # -- batches out -------------------------------------------------------------
    def ready(self, now_ns: int, flush: bool = False) -> bool:
        """Whether a batch should go now: full, timed out, or flushing; and the window allows it."""
        if not self.records or self.config.paused or self.in_flight >= self.window:
            return False
        if flush or len(self.records) >= self.config.batch_size:
            return True
        return now_ns - self.first_ns >= self.config.timeout_ms * 1_000_000

    def deadline_ns(self) -> int | None:
        """When the waiting partial batch times out (None if nothing waits or the stream is held)."""
        if not self.records or self.config.paused or self.in_flight >= self.window:
            return None
        return self.first_ns + int(self.config.timeout_ms * 1_000_000)

    def take(self, now_ns: int) -> bytes:
        """Form the next batch, record it as in flight, and return it encoded."""
        size = self.config.batch_size
        if size == 1:
            size = COALESCE_MAX
        n = min(size, len(self.records), max(1, self.window - self.in_flight))
        batch = Batch(
            self.channel,
            self.shard,
            self.epoch,
            self.next_seq,
            self.retained_from,
            self.ingest_ns[:n],
            self.records[:n],
        )
        del self.records[:n]
        del self.ingest_ns[:n]
        if self.records:
            self.first_ns = now_ns
        data = encoder.encode(batch)
        self.unacked.append((self.next_seq, n, data))
        self.next_seq += n
        self.in_flight += n
        self.sent_ns = now_ns
        return data

    # -- acknowledgements --------------------------------------------------------
    def ack(self, kind: str, seq: int) -> None:
        """Note a delivered or checkpointed position; release what is both."""
        if kind == "delivered":
            self.delivered = max(self.delivered, seq)
        elif kind == "checkpoint":
            self.checkpointed = max(self.checkpointed, seq)
        done = min(self.delivered, self.checkpointed)
        while self.unacked and self.unacked[0][0] + self.unacked[0][1] - 1 <= done:
            _, n, _ = self.unacked.popleft()
            self.in_flight -= n

    def batches_after(self, seq: int) -> list[tuple[int, bytes]]:
        """(records, encoded batch) of every held batch with a record after `seq`, oldest first (for a resend)."""
        return [(n, data) for first, n, data in self.unacked if first + n - 1 > seq]

    @property
    def retained_from(self) -> int:
        return self.unacked[0][0] if self.unacked else self.next_seq

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def delivered_all(self) -> bool:
        """Nothing waits and the events of everything sent are published (what a graceful stop needs)."""
        return not self.records and self.delivered >= self.last_seq
