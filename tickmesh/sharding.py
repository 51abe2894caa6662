"""Symbol affinity: a ticker always lands on the same shard of its channel."""

from __future__ import annotations

import zlib


def shard_of(ticker: str, shards: int) -> int:
    """A stable hash (crc32), never Python's salted hash(), modulo the shard count."""
    return zlib.crc32(ticker.encode()) % shards if shards > 1 else 0
