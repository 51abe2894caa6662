"""Symbol affinity: a ticker always lands on the same router, and on the same shard of its channel."""

from __future__ import annotations

import zlib


def shard_of(ticker: str, shards: int) -> int:
    """A stable hash (crc32), never Python's salted hash(), modulo the shard count."""
    return zlib.crc32(ticker.encode()) % shards if shards > 1 else 0


def router_of(ticker: str, routers: int) -> int:
    """The router a producer sends a ticker to: the shard hash (crc32), scrambled by a Fibonacci
    multiply so that a ticker's router says nothing about its shard (with crc32 % N for both,
    2 routers and 2 shards would pair router i with shard i only)."""
    if routers <= 1:
        return 0
    return (((zlib.crc32(ticker.encode()) * 0x9E3779B1) & 0xFFFFFFFF) >> 16) % routers
