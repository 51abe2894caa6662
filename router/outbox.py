"""One (channel, shard) stream's router side: records waiting to be batched, then the stream protocol."""

from __future__ import annotations

from tickmesh.config import ChannelConfig
from tickmesh.schema import Record
from tickmesh.stream import SenderStream

# A batch_size-1 channel coalesces at most this many waiting records into one message.
COALESCE_MAX = 1_024


class Outbox:
    """Batches records for one worker stream; `stream` sequences, holds and releases what was sent.

    Sequence numbers are given when a batch is formed, so conflated or dropped
    records never open a gap the worker would have to ask about. At most
    `window` records are in flight (sent, not acknowledged): past that the
    records wait here, and past `config.buffer` the overflow policy applies.
    """

    def __init__(self, channel: str, shard: int, epoch: int, config: ChannelConfig, window: int, now_ns: int) -> None:
        self.channel, self.shard = channel, shard
        self.config = config
        self.stream = SenderStream(channel, shard, epoch, window, now_ns)
        self.records: list[Record] = []
        self.ingest_ns: list[int] = []
        self.first_ns = 0  # monotonic ns when the oldest waiting record arrived
        self.placed = 0  # records put here, ever
        self.settled = 0  # of them, sent in a batch or conflated/dropped by the overflow policy

    # -- records in ------------------------------------------------------------
    def add(self, record: Record, ingest_ns: int, now_ns: int) -> None:
        if not self.records:
            self.first_ns = now_ns
        self.records.append(record)
        self.ingest_ns.append(ingest_ns)
        self.placed += 1

    def add_many(self, records: list[Record], ingest_ns: int, now_ns: int) -> None:
        """Records of one ingest frame at once (one stamp: they arrived together)."""
        if not self.records:
            self.first_ns = now_ns
        self.records.extend(records)
        self.ingest_ns.extend([ingest_ns] * len(records))
        self.placed += len(records)

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
        self.settled += removed
        return removed

    def drop_oldest(self, n: int) -> int:
        n = min(n, len(self.records))
        del self.records[:n]
        del self.ingest_ns[:n]
        self.settled += n
        return n

    # -- batches out -------------------------------------------------------------
    def ready(self, now_ns: int, flush: bool = False) -> bool:
        """Whether a batch should go now: full, timed out, or flushing; and the window allows it."""
        if not self.records or self.config.paused or self.stream.room <= 0:
            return False
        if flush or len(self.records) >= self.config.batch_size:
            return True
        return now_ns - self.first_ns >= self.config.timeout_ms * 1_000_000

    def deadline_ns(self) -> int | None:
        """When the waiting partial batch times out (None if nothing waits or the stream is held)."""
        if not self.records or self.config.paused or self.stream.room <= 0:
            return None
        return self.first_ns + int(self.config.timeout_ms * 1_000_000)

    def take(self, now_ns: int) -> bytes:
        """Form the next batch, hand it to the stream, and return it encoded."""
        size = self.config.batch_size
        if size == 1:
            size = COALESCE_MAX
        n = min(size, len(self.records), max(1, self.stream.room))
        if n == len(self.records):  # the common case: everything that waits, without copying it
            records, stamps = self.records, self.ingest_ns
            self.records, self.ingest_ns = [], []
        else:
            records, stamps = self.records[:n], self.ingest_ns[:n]
            del self.records[:n]
            del self.ingest_ns[:n]
            self.first_ns = now_ns
        self.settled += n
        return self.stream.batch(records, stamps, now_ns)

    @property
    def delivered_all(self) -> bool:
        """Nothing waits and the events of everything sent are published (what a graceful stop needs)."""
        return not self.records and self.stream.all_delivered
