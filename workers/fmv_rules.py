"""FMV channel detector: fair market value far from the market price (rules in docs/events.md)."""

from __future__ import annotations

import msgspec

from tickmesh.config import ChannelConfig, FmvRules
from tickmesh.schema import Event, FairMarketValue, FmvDeviation, Record, event_id

EPS = 1e-9  # within EPS of a threshold counts as on it: decimal prices meet binary floats
SNAPSHOT_VERSION = 1


class FmvDetector:
    """Deviation of fair value from the market price; per ticker, the last event's time and direction."""

    source = "fmv"

    def __init__(self, channel: ChannelConfig) -> None:
        self.last: dict[str, tuple[int, int]] = {}  # ticker -> (time, +1 overvalued / -1 undervalued)
        self.ignored: dict[str, int] = {"low_confidence": 0, "no_market_price": 0}
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
        self.last[record.ticker] = (t, side)
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

    def snapshot(self) -> bytes:
        """The last event's time and direction per ticker."""
        return msgspec.msgpack.encode(FmvSnapshot(SNAPSHOT_VERSION, self.ignored, self.last))

    def restore(self, data: bytes) -> None:
        """The inverse of snapshot. Raises ValueError, changing nothing, for anything else."""
        try:
            snap = msgspec.msgpack.decode(data, type=FmvSnapshot)
            if snap.v != SNAPSHOT_VERSION:
                raise ValueError(f"version {snap.v}")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"not an fmv detector snapshot of version {SNAPSHOT_VERSION}: {exc}") from None
        self.last, self.ignored = dict(snap.last), dict(snap.ignored)


class FmvSnapshot(msgspec.Struct, array_like=True, frozen=True):
    """The fmv detector's state on disk: per ticker (time, +1 overvalued / -1 undervalued)."""

    v: int
    ignored: dict[str, int]
    last: dict[str, tuple[int, int]]
