"""OHLCV channel detector: big move, close at high/low, volume surge and (optional) trend per bar."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

import msgspec

from tickmesh.config import ChannelConfig, OhlcvRules
from tickmesh.schema import Bar, BigMove, Event, High, Low, Record, Trend, VolumeSurge, check_ticker, event_id
from workers import snapshot

EPS = 1e-9  # within EPS of a threshold counts as on it: decimal prices meet binary floats
SNAPSHOT_VERSION = 1


class OhlcvState:
    """One ticker's rolling windows, within a session: a gap of more than `session_gap_bars` bar
    lengths starts them over (minute bars overnight), while daily bars over a weekend go on."""

    __slots__ = ("end", "bars", "nvol", "vols", "closes", "run", "done")

    def __init__(self, volume_window: int, trend_bars: int) -> None:
        self.end = 0  # the end of the last bar applied
        self.bars = 0  # bars applied so far
        self.nvol = 0  # volumes held (up to the window)
        self.vols = array("d", [0.0] * volume_window)  # the last volumes, slot bars % window
        self.closes = array("d", [0.0] * trend_bars)  # the last closes, slot bars % trend_bars
        self.run = 0  # closes in the current strict run, signed by its direction (+up, -down)
        self.done = False  # the current run already produced its trend

    def resize(self, volume_window: int, trend_bars: int) -> None:
        """New window sizes: keep the newest values that fit (a run is cut to the closes kept)."""
        self.nvol = min(self.nvol, volume_window)
        self.vols = _resized(self.vols, self.bars, volume_window)
        kept = min(self.bars, len(self.closes), trend_bars)
        self.closes = _resized(self.closes, self.bars, trend_bars)
        if abs(self.run) > kept:
            self.run = kept if self.run > 0 else -kept


def _resized(ring: array[float], count: int, size: int) -> array[float]:
    old = len(ring)
    out = array("d", [0.0] * size)  # (from a list: no spare room)
    for k in range(max(0, count - min(old, size)), count):
        out[k % size] = ring[k % old]
    return out


class OhlcvDetector:
    """Per-bar rules (docs/events.md); bars of a ticker must arrive in order of their end."""

    source = "ohlcv"

    def __init__(self, channel: ChannelConfig) -> None:
        self.states: dict[str, OhlcvState] = {}
        self.ignored: dict[str, int] = {"out_of_order": 0}
        self.dirty: set[str] = set()  # tickers touched since the last checkpoint
        self.cleared = False
        self.configure(channel)

    def configure(self, channel: ChannelConfig) -> None:
        """New rules and priority; windows keep their newest values when their size changes."""
        rules: OhlcvRules = channel.rules  # type: ignore[attr-defined]
        self.rules, self.priority = rules, channel.priority
        self.big, self.extreme, self.ratio = (
            rules.big_move_pct + EPS,
            rules.close_at_extreme_pct - EPS,
            rules.volume_surge_ratio,
        )
        for ticker, st in self.states.items():
            if len(st.vols) != rules.volume_window or len(st.closes) != rules.trend_bars:
                st.resize(rules.volume_window, rules.trend_bars)
                self.dirty.add(ticker)

    def process(self, record: Record, record_seq: int, ingest_ns: int, detected_ns: int) -> list[Event]:
        if type(record) is not Bar or not self.rules.enabled:
            return []
        ticker = record.ticker
        if ticker not in self.dirty:  # its first bar since the last checkpoint
            self.dirty.add(check_ticker(ticker))  # the process's one string of it, not this record's
        st = self.states.get(ticker)
        if st is not None and record.end <= st.end:
            self.ignored["out_of_order"] += 1
            return []
        if st is None or record.start - st.end > self.rules.session_gap_bars * (record.end - record.start):
            # a new ticker, or a new session: windows of an earlier session never judge this one's bars
            st = self.states[check_ticker(ticker)] = OhlcvState(self.rules.volume_window, self.rules.trend_bars)
        st.end = record.end
        env = (record_seq, ingest_ns, detected_ns)
        o, c = record.open, record.close
        pct = (c - o) / o * 100.0
        events: list[Event] = []
        size = abs(pct)
        if size > self.big:
            events.append(
                BigMove(
                    self._id("big_move", record),
                    record.ticker,
                    "ohlcv",
                    self.priority,
                    record.end,
                    c,
                    *env,
                    direction="up" if pct > 0 else "down",
                    pct=pct,
                )
            )
        if size >= self.extreme and record.high != record.low:
            if c == record.high:
                events.append(
                    High(self._id("high", record), record.ticker, "ohlcv", self.priority, record.end, c, *env, pct=pct)
                )
            elif c == record.low:
                events.append(
                    Low(self._id("low", record), record.ticker, "ohlcv", self.priority, record.end, c, *env, pct=pct)
                )
        self._volume(st, record, events, env)
        self._trend(st, record, events, env)
        st.bars += 1
        return events

    def _id(self, kind: str, bar: Bar) -> str:
        return event_id("ohlcv", kind, bar.ticker, bar.end)

    def _volume(self, st: OhlcvState, bar: Bar, out: list[Event], env: tuple[int, int, int]) -> None:
        """Volume surge against the mean of up to `volume_window` previous bars; then remember it."""
        vols, rules = st.vols, self.rules
        if st.bars >= rules.volume_min_bars and st.nvol:
            mean = math.fsum(vols) / st.nvol  # unused slots hold 0; fsum is exact: order does not matter
            if mean > 0.0 and bar.volume / mean > self.ratio + EPS:
                out.append(
                    VolumeSurge(
                        self._id("volume_surge", bar),
                        bar.ticker,
                        "ohlcv",
                        self.priority,
                        bar.end,
                        bar.close,
                        *env,
                        volume=bar.volume,
                        ratio=bar.volume / mean,
                        average=mean,
                    )
                )
        vols[st.bars % len(vols)] = bar.volume
        if st.nvol < len(vols):
            st.nvol += 1

    def _trend(self, st: OhlcvState, bar: Bar, out: list[Event], env: tuple[int, int, int]) -> None:
        """Strict runs of closes: a run of `trend_bars` closes that moved enough fires once."""
        closes, c, n = st.closes, bar.close, len(st.closes)
        prev = closes[(st.bars - 1) % n] if st.bars else None
        if prev is None or c == prev:
            st.run, st.done = 1, False
        elif c > prev and st.run >= 2:
            st.run += 1
        elif c < prev and st.run <= -2:
            st.run -= 1
        else:
            st.run, st.done = (2 if c > prev else -2), False
        first = closes[(st.bars + 1) % n]  # the close n - 1 bars back (slot about to be reused)
        closes[st.bars % n] = c
        if self.rules.detect_trends and abs(st.run) >= n and not st.done:
            pct = (c - first) / first * 100.0
            if abs(pct) >= self.rules.trend_min_pct - EPS:
                st.done = True
                out.append(
                    Trend(
                        self._id("trend", bar),
                        bar.ticker,
                        "ohlcv",
                        self.priority,
                        bar.end,
                        c,
                        *env,
                        direction="up" if st.run > 0 else "down",
                        pct=pct,
                    )
                )

    # -- checkpoints (workers/snapshot.py) ------------------------------------------------------
    def tickers(self) -> list[str]:
        return list(self.states)

    def header(self) -> bytes:
        return msgspec.msgpack.encode((SNAPSHOT_VERSION, self.ignored))

    def row(self, ticker: str) -> bytes | None:
        """One ticker's windows: (end, bars, volumes held, volumes, closes, run, done), arrays as raw bytes."""
        s = self.states.get(ticker)
        if s is None:
            return None
        return msgspec.msgpack.encode((s.end, s.bars, s.nvol, s.vols.tobytes(), s.closes.tobytes(), s.run, s.done))

    def snapshot(self) -> bytes:
        return snapshot.snapshot(self)

    def restore(self, data: bytes) -> None:
        snapshot.restore(self, data, "ohlcv")

    def restore_rows(self, header: bytes, rows: Iterable[tuple[str, bytes]]) -> None:
        """Replace every state by the saved ones, resized to the current windows. Raises ValueError,
        changing nothing, for anything but state of this version."""
        try:
            version, ignored = _header.decode(header)
            if version != SNAPSHOT_VERSION:
                raise ValueError(f"version {version}")
            states = {}
            for ticker, row in rows:
                end, bars, nvol, vols, closes, run, done = _row.decode(row)
                st = states[check_ticker(ticker)] = OhlcvState.__new__(OhlcvState)
                st.end, st.bars, st.nvol = end, bars, nvol
                st.vols, st.closes = snapshot.array_of("d", vols), snapshot.array_of("d", closes)
                st.run, st.done = run, done
                if not (st.vols and st.closes and 0 <= nvol <= len(st.vols) and abs(run) <= bars + 1):
                    raise ValueError(f"bad state for {ticker}")
        except Exception as exc:  # the decode boundary: whatever is wrong, nothing changes
            raise ValueError(f"not an ohlcv detector snapshot of version {SNAPSHOT_VERSION}: {exc}") from None
        for st in states.values():
            if len(st.vols) != self.rules.volume_window or len(st.closes) != self.rules.trend_bars:
                st.resize(self.rules.volume_window, self.rules.trend_bars)
        self.states, self.ignored = states, {**self.ignored, **ignored}
        self.dirty, self.cleared = set(), False


_header = msgspec.msgpack.Decoder(tuple[int, dict[str, int]])
_row = msgspec.msgpack.Decoder(tuple[int, int, int, bytes, bytes, int, bool])
