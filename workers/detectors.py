"""The detector protocol every channel's rules implement, and the factory the worker calls."""

from __future__ import annotations

from typing import Protocol

from tickmesh.config import ChannelConfig
from tickmesh.schema import Event, Record
from workers.fmv_rules import FmvDetector
from workers.ohlcv_rules import OhlcvDetector
from workers.tick_rules import TickDetector


class Detector(Protocol):
    """Pure per-channel event detection: no sockets, no clocks (times come in as arguments)."""

    ignored: dict[str, int]  # records counted and skipped, by reason (reported as metrics)

    def process(self, record: Record, record_seq: int, ingest_ns: int, detected_ns: int) -> list[Event]:
        """The events this record causes (a new list; empty for a record of another channel or a
        rule set switched off)."""
        ...

    def configure(self, channel: ChannelConfig) -> None:
        """Apply a live rule or priority change; per-ticker state is kept."""
        ...

    def snapshot(self) -> bytes:
        """All per-ticker state, msgspec-encoded, compact."""
        ...

    def restore(self, data: bytes) -> None:
        """The inverse of snapshot (crash recovery): replaces all per-ticker state."""
        ...


DETECTORS: dict[str, type[TickDetector] | type[OhlcvDetector] | type[FmvDetector]] = {
    "tick": TickDetector,
    "ohlcv": OhlcvDetector,
    "fmv": FmvDetector,
}


def make_detector(channel: str, config: ChannelConfig) -> Detector:
    """The detector of a channel ("tick" | "ohlcv" | "fmv") built from its config."""
    factory = DETECTORS.get(channel)
    if factory is None:
        raise ValueError(f"no detector for channel {channel!r}")
    return factory(config)
