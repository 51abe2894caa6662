"""The benchmark's records: a fixed channel mix with tick highs on a known schedule, and warm-up history (pure)."""

from __future__ import annotations

import random
from collections.abc import Iterator

from msgspec import Struct

NS = 1_000_000_000
BAR_NS = 60 * NS
WireRecord = tuple  # the record as its msgpack array: ("T", ticker, price, size, ts), ("B", ...), ("F", ...)


class Mix(Struct, frozen=True, kw_only=True):
    """What a load generator sends: symbol counts and the share of each channel in the records."""

    tick_symbols: int = 100
    ohlcv_symbols: int = 8_000
    fmv_symbols: int = 20  # the first tick symbols also get FMV updates (the router knows their price)
    trade_share: float = 0.816  # the rest after trades and FMV are bars
    fmv_share: float = 0.024
    high_every_s: float = 2.0  # each tick symbol makes a new session high this often (event time)
    seed: int = 0
    tick_prefix: str = "T"
    ohlcv_prefix: str = "B"


def scenario_mix(tick: int, ohlcv: int, fmv: int, per_minute: float, bar_seconds: int = 60) -> Mix:
    """The mix of a design scenario: one bar per OHLCV symbol per bar, FMV up to 10 % of the rest, trades the rest."""
    rate = per_minute / 60
    bars = min(rate, ohlcv / bar_seconds)
    spare = rate - bars
    fmv_rate = min(float(fmv), 0.1 * spare)
    return Mix(
        tick_symbols=tick,
        ohlcv_symbols=ohlcv,
        fmv_symbols=min(fmv, tick),
        trade_share=(spare - fmv_rate) / rate,
        fmv_share=fmv_rate / rate,
    )


def symbol(prefix: str, i: int) -> str:
    return f"{prefix}{i:06d}"


class Workload:
    """An endless, deterministic stream of wire records in the proportions of a Mix.

    Tick symbols trade round-robin just below their session high; once every
    `high_every_s` of event time a symbol's next trade is a new high 0.1 % above
    the last (a `high` event under the default rules: ≥ 0.05 % or $0.10 above
    the last reported high, and ≥ 1 s after it). Prices stay in 100–250, so the
    5 s move never reaches the surge gate. Bars go round-robin over the OHLCV
    symbols, in order per symbol; about 2 % are big moves, 2 % close at an
    extreme, 1 % carry a volume surge. FMV updates are mostly within 0.3 % of the
    last trade, 5 % far from it, 10 % below the confidence floor.
    """

    def __init__(self, mix: Mix) -> None:
        self.mix = mix
        self.rng = rng = random.Random(mix.seed)
        self.tick_names = [symbol(mix.tick_prefix, i) for i in range(mix.tick_symbols)]
        self.high = [round(rng.uniform(100, 150), 2) for _ in range(mix.tick_symbols)]
        self.low = list(self.high)
        self.next_high = [0] * mix.tick_symbols  # 0: the symbol has not traded yet
        self.high_every_ns = int(mix.high_every_s * NS)
        self.bar_names = [symbol(mix.ohlcv_prefix, i) for i in range(mix.ohlcv_symbols)]
        self.anchor = [round(rng.uniform(10, 400), 2) for _ in range(mix.ohlcv_symbols)]
        self.close = list(self.anchor)
        self.volume = [rng.choice((2_000.0, 5_000.0, 20_000.0, 100_000.0)) for _ in range(mix.ohlcv_symbols)]
        self.last_end = [0] * mix.ohlcv_symbols
        self.tick_cursor = self.bar_cursor = self.fmv_cursor = 0
        self.carry = [0.0, 0.0]
        self.counts = {"trades": 0, "bars": 0, "fmv": 0, "planned_highs": 0}

    def records(self, n: int, now_ns: int) -> list[WireRecord]:
        """The next `n` records, stamped from `now_ns` on (one ns apart)."""
        mix = self.mix
        trades = self._take(0, n * mix.trade_share) if mix.tick_symbols else 0
        fmv = min(n - trades, self._take(1, n * mix.fmv_share)) if mix.fmv_symbols else 0
        bars = n - trades - fmv if mix.ohlcv_symbols else 0
        if not mix.ohlcv_symbols:  # nothing but ticks (and FMV): trades fill the frame
            trades = n - fmv if mix.tick_symbols else 0
        out = self.trades(trades, now_ns)
        out += self.fmv_updates(fmv, now_ns + trades)
        out += self.bars(bars, now_ns + trades + fmv)
        return out

    def _take(self, slot: int, expected: float) -> int:
        self.carry[slot] += expected
        k = int(self.carry[slot])
        self.carry[slot] -= k
        return k

    def trades(self, n: int, ts: int) -> list[WireRecord]:
        names, high, low, due = self.tick_names, self.high, self.low, self.next_high
        count, rnd, every = len(names), self.rng.random, self.high_every_ns
        out: list[WireRecord] = []
        s = self.tick_cursor
        planned = 0
        for i in range(n):
            t = ts + i
            if not due[s]:  # first trade: sets the level; highs start at a random phase so they do not bunch
                due[s] = t + int(every * (1 + rnd()))
                price = high[s]
            elif t >= due[s]:
                price = high[s] = round(high[s] * 1.001 + 0.005, 2)
                due[s] = t + every
                planned += 1
            else:
                floor = max(low[s], round(high[s] * 0.9995, 2))
                price = round(floor + (high[s] - floor) * rnd(), 2)
            out.append(("T", names[s], price, 100.0, t))
            s = s + 1 if s + 1 < count else 0
        self.tick_cursor = s
        self.counts["trades"] += n
        self.counts["planned_highs"] += planned
        return out

    def fmv_updates(self, n: int, ts: int) -> list[WireRecord]:
        rnd, out = self.rng.random, []
        for i in range(n):
            s = self.fmv_cursor
            self.fmv_cursor = (s + 1) % self.mix.fmv_symbols
            r = rnd()
            dev = (0.015 + 0.015 * rnd()) * (1 if r < 0.025 else -1) if r < 0.05 else 0.003 * (2 * rnd() - 1)
            confidence = 0.6 if rnd() < 0.1 else 0.95
            out.append(("F", self.tick_names[s], round(self.high[s] * (1 + dev), 4), ts + i, None, confidence))
        self.counts["fmv"] += n
        return out

    def bars(self, n: int, ts: int) -> list[WireRecord]:
        rnd, out = self.rng.random, []
        names, close, anchor, volume, last_end = self.bar_names, self.close, self.anchor, self.volume, self.last_end
        count = len(names)
        s = self.bar_cursor
        for i in range(n):
            o = close[s]
            r = rnd()
            if r < 0.02:  # big move, half of them closing at the extreme
                pct = (0.022 + 0.02 * rnd()) * (1 if rnd() < 0.5 else -1)
            elif r < 0.04:  # close at an extreme, 1.2-1.8 %
                pct = (0.012 + 0.006 * rnd()) * (1 if rnd() < 0.5 else -1)
            else:
                pct = 0.008 * (rnd() - 0.5) - 0.02 * (o / anchor[s] - 1)
            c = round(max(o * (1 + pct), 0.05), 2)
            wick = max(0.01, round(o * 0.001, 2))
            hi, lo = round(max(o, c) + wick, 2), round(min(o, c) - wick, 2)
            if r < 0.04 and rnd() < (0.5 if r < 0.02 else 1.0):
                hi, lo = (c, lo) if c > o else (hi, c)
            lo = max(lo, 0.01)
            v = volume[s] * (0.9 + 0.2 * rnd()) * (5.0 if rnd() < 0.01 else 1.0)
            end = max(ts + i, last_end[s] + 1_000)
            start = last_end[s] or end - BAR_NS
            out.append(("B", names[s], o, hi, lo, c, round(v), start, end))
            close[s], last_end[s] = c, end
            s = s + 1 if s + 1 < count else 0
        self.bar_cursor = s
        self.counts["bars"] += n
        return out


def warm_history(
    tick: list[str], ohlcv: list[str], end_ns: int, *, tick_points: int = 140, bars: int = 12, chunk: int = 1_000
) -> Iterator[list[WireRecord]]:
    """History that fills the windows of every symbol, in time order, as frames of at most `chunk` records.

    Per tick symbol: `tick_points` trades, the last min(20, points/3) of them over the
    final 5 s (surge slots), the rest evenly over the 600 s before (trend buckets).
    With 140 points every 5 s trend bucket and every 250 ms surge slot of the
    default rules holds a trade: the state of an actively traded symbol. Per OHLCV
    symbol: `bars` one-minute bars (the 10-bar volume window full). Two FMV updates
    per tick symbol at the end.
    """
    tail = min(20, max(1, tick_points // 3))
    history = max(1, tick_points - tail)
    spacing = 600 * NS // history
    times = [end_ns - 5 * NS - (history - k) * spacing for k in range(history)]
    times += [end_ns - 5 * NS + k * (5 * NS // tail) for k in range(tail)]
    frame: list[WireRecord] = []
    for b in range(bars):
        bar_end = end_ns - (bars - b) * BAR_NS
        for i, name in enumerate(ohlcv):
            o = 50.0 + i % 200
            c = o * (1.003 if b % 2 else 0.997)
            frame.append(
                ("B", name, o, max(o, c) + 0.05, min(o, c) - 0.05, round(c, 2), 1_000.0, bar_end - BAR_NS, bar_end)
            )
            if len(frame) >= chunk:
                yield frame
                frame = []
    for k, t in enumerate(times):
        for i, name in enumerate(tick):
            frame.append(("T", name, 100.0 + i % 50 + 0.01 * (k % 7), 100.0, t + i))
            if len(frame) >= chunk:
                yield frame
                frame = []
    for i, name in enumerate(tick):
        frame.append(("F", name, 101.0 + i % 50, end_ns + i, None, 0.95))
        frame.append(("F", name, 99.0 + i % 50, end_ns + NS + i, None, 0.95))
        if len(frame) >= chunk:
            yield frame
            frame = []
    if frame:
        yield frame
