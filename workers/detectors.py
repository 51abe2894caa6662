"""The detector protocol every channel's rules implement, and the factory the worker calls."""

from __future__ import annotations

from collections.abc import Iterable
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

    # checkpoints, a header and a row per ticker (workers/snapshot.py)
    dirty: set[str]  # tickers touched since the last export
    cleared: bool  # every row is void (all sessions restarted) since the last export

    def header(self) -> bytes:
        """The detector-wide state: version, layout, ignored counts."""
        ...

    def row(self, ticker: str) -> bytes | None:
        """One ticker's state, msgspec-encoded, compact (None: it has none)."""
        ...

    def tickers(self) -> list[str]: ...

    def restore_rows(self, header: bytes, rows: Iterable[tuple[str, bytes]]) -> None:
        """The inverse (crash recovery): replaces all per-ticker state; ValueError changes nothing."""
        ...

    def snapshot(self) -> bytes:
        """All state in one blob."""
        ...

    def restore(self, data: bytes) -> None:
        """The inverse of snapshot."""
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
