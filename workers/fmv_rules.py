"""FMV channel detector: fair market value far from the market price (rules in docs/events.md)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from tickmesh.config import ChannelConfig, FmvRules
from tickmesh.schema import Event, FairMarketValue, FmvDeviation, Record, check_ticker, event_id
from workers import snapshot

EPS = 1e-9  # within EPS of a threshold counts as on it: decimal prices meet binary floats
SNAPSHOT_VERSION = 1


class FmvDetector:
    """Deviation of fair value from the market price; per ticker, the last event's time and direction."""

    source = "fmv"

    def __init__(self, channel: ChannelConfig) -> None:
        self.last: dict[str, tuple[int, int]] = {}  # ticker -> (time, +1 overvalued / -1 undervalued)
        self.ignored: dict[str, int] = {"low_confidence": 0, "no_market_price": 0}
        self.dirty: set[str] = set()  # tickers whose last event changed since the last checkpoint
        self.cleared = False
        self.configure(channel)

    def configure(self, channel: ChannelConfig) -> None:
        rules: FmvRules = channel.rules  # type: ignore[attr-defined]
        self.rules, self.priority = rules, channel.priority
        self.cooldown_ns = round(rules.cooldown_s * 1e9)

    def process(self, record: Record, record_seq: int, ingest_ns: int, detected_ns: int) -> list[Event]:
        if type(record) is not FairMarketValue or not self.rules.enabled:
            return []
        confidence = 1.0 if record.confidence is None else record.confidence
        if confidence < self.rules.confidence_min:
            self.ignored["low_confidence"] += 1
            return []
        market = record.market_price
        if market is None:
            self.ignored["no_market_price"] += 1
            return []
        deviation = (record.fmv - market) / market * 100.0
        if abs(deviation) <= self.rules.deviation_pct + EPS:
            return []
        side = 1 if deviation > 0 else -1
        t = record.timestamp
        last = self.last.get(record.ticker)
        if last is not None and last[1] == side and t - last[0] < self.cooldown_ns:
            return []
        ticker = check_ticker(record.ticker)  # the process's one string of it, not this record's
        self.last[ticker] = (t, side)
        self.dirty.add(ticker)
        return [
            FmvDeviation(
                event_id("fmv", "fmv_deviation", record.ticker, t),
                record.ticker,
                "fmv",
                self.priority,
                t,
                record.fmv,
                record_seq,
                ingest_ns,
                detected_ns,
                direction="overvalued" if side > 0 else "undervalued",
                fmv=record.fmv,
                market_price=market,
                deviation=deviation,
                confidence=confidence,
            )
        ]

    # -- checkpoints (workers/snapshot.py) ------------------------------------------------------
    def tickers(self) -> list[str]:
        return list(self.last)

    def header(self) -> bytes:
        return msgspec.msgpack.encode((SNAPSHOT_VERSION, self.ignored))

    def row(self, ticker: str) -> bytes | None:
        """The last event's time and direction."""
        last = self.last.get(ticker)
        return None if last is None else msgspec.msgpack.encode(last)

    def snapshot(self) -> bytes:
        return snapshot.snapshot(self)

    def restore(self, data: bytes) -> None:
        snapshot.restore(self, data, "fmv")

    def restore_rows(self, header: bytes, rows: Iterable[tuple[str, bytes]]) -> None:
        """Replace every state by the saved ones. Raises ValueError, changing nothing, for anything else."""
        try:
            version, ignored = _header.decode(header)
            if version != SNAPSHOT_VERSION:
                raise ValueError(f"version {version}")
            last = {check_ticker(ticker): _row.decode(row) for ticker, row in rows}
        except Exception as exc:  # the decode boundary: whatever is wrong, nothing changes
            raise ValueError(f"not an fmv detector snapshot of version {SNAPSHOT_VERSION}: {exc}") from None
        self.last, self.ignored = last, {**self.ignored, **ignored}
        self.dirty, self.cleared = set(), False


_header = msgspec.msgpack.Decoder(tuple[int, dict[str, int]])
_row = msgspec.msgpack.Decoder(tuple[int, int])
