"""The synthetic market: a deterministic, pure generator of trades, bars and FMV updates (no sockets)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from statistics import NormalDist

from tickmesh.schema import Bar, FairMarketValue, Record, Trade

NS = 1_000_000_000
# Normal quantiles: a draw is one uniform choice from the table (fast, deterministic, no tails past ±3.7).
NORMALS: tuple[float, ...] = tuple(NormalDist().inv_cdf((i + 0.5) / 4096) for i in range(4096))
SIZES = (100, 100, 100, 100, 200, 200, 300, 500, 50, 25, 10, 1, 1_000, 150, 400)
EXCHANGES = (1, 2, 3, 4, 7, 8, 10, 11, 12, 15, 19, 21)
_TICK = "AAPL MSFT NVDA AMZN GOOGL META TSLA AMD NFLX INTC JPM BAC XOM CVX KO PEP WMT DIS BA CSCO ORCL CRM ADBE QCOM"
_OHLCV = "SPY QQQ IWM DIA XLF XLE XLK XLV XLI XLY GLD SLV TLT HYG EEM EFA VNQ SMH ARKK KRE"
TICK_NAMES, OHLCV_NAMES = _TICK.split(" "), _OHLCV.split(" ")


def symbol_names(count: int, known: list[str], prefix: str) -> tuple[str, ...]:
    """`count` distinct names: the known ones first, then prefix + base-26 letters (deterministic)."""
    names = list(known[:count])
    i = 0
    while len(names) < count:
        letters, n = "", i
        for _ in range(3):
            n, r = divmod(n, 26)
            letters = chr(65 + r) + letters
        names.append(prefix + letters if n == 0 else f"{prefix}{letters}{n}")
        i += 1
    return tuple(names)


@dataclass(frozen=True)
class MarketSpec:
    """What to generate. Rates are per second of event time; event time starts at `start_ns`."""

    tick_symbols: tuple[str, ...]
    ohlcv_symbols: tuple[str, ...]
    fmv_symbols: tuple[str, ...]  # a subset of tick_symbols, so the router knows a market price
    event_rate: float  # records per event second, all channels together
    start_ns: int
    seed: int = 0
    slice_records: int = 100  # about this many records per yielded list
    bar_seconds: int = 60
    history_bars: int = 10  # bars per OHLCV symbol ending at or before start (volume surges need 5)
    duration_s: float | None = None  # event seconds to generate; None = forever
    volatility: float = 1.0  # scales every price move (a market open is livelier)
    jump_every_s: float = 180.0  # mean event seconds between jumps of one tick symbol

    def __post_init__(self) -> None:
        if not set(self.fmv_symbols) <= set(self.tick_symbols):
            raise ValueError("fmv symbols must be tick symbols (the router fills the market price from trades)")
        if set(self.tick_symbols) & set(self.ohlcv_symbols):
            raise ValueError("tick and OHLCV symbols must differ (their prices are generated separately)")
        if self.event_rate <= 0 or self.slice_records < 1 or self.bar_seconds < 1:
            raise ValueError("event_rate, slice_records and bar_seconds must be positive")
        if self.tick_symbols and self.event_rate <= self.bar_rate:
            raise ValueError(
                f"{len(self.ohlcv_symbols)} OHLCV symbols alone make {self.bar_rate:.1f} bars per event second:"
                f" the rate leaves nothing for trades (raise --rate or lower --compression)"
            )

    @property
    def bar_rate(self) -> float:
        return len(self.ohlcv_symbols) / self.bar_seconds

    def rates(self) -> tuple[float, float]:
        """(trades, FMV updates) per event second: what the bars leave of the rate, FMV up to 10 %."""
        spare = max(0.0, self.event_rate - self.bar_rate) if self.tick_symbols else 0.0
        fmv = min(float(len(self.fmv_symbols)), 0.1 * spare)
        return spare - fmv, fmv


class Market:
    """An iterator of record lists, one per slice of event time; `clock_ns` is where the last slice ended."""

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.rng = rng = random.Random(spec.seed)
        self.trade_rate, self.fmv_rate = spec.rates()
        self.slice_ns = max(1_000_000, int(spec.slice_records / spec.event_rate * NS))
        self.clock_ns = spec.start_ns
        self.end_ns = None if spec.duration_s is None else spec.start_ns + int(spec.duration_s * NS)
        self.bar_ns = spec.bar_seconds * NS
        self._carry = {"trades": 0.0, "fmv": 0.0, "regimes": 0.0, "jumps": 0.0}
        self._init_ticks(rng)
        self._init_bars(rng)

    def _init_ticks(self, rng: random.Random) -> None:
        n = len(self.spec.tick_symbols)
        weights = [1.0 / (i + 1) ** 0.7 for i in range(n)]  # a few symbols trade most
        total = sum(weights) or 1.0
        self.cum_weights = list(accumulate(weights))
        self.anchor = [round(math.exp(rng.uniform(math.log(8), math.log(400))), 2) for _ in range(n)]
        self.price = list(self.anchor)
        self.interval = [total / (w * self.trade_rate) if self.trade_rate else 1.0 for w in weights]
        vol = self.spec.volatility
        self.sigma = [rng.uniform(0.0003, 0.0008) * vol * math.sqrt(dt) for dt in self.interval]
        self.revert = [min(0.2, dt / 1_800) for dt in self.interval]  # pull back toward the anchor
        self.drift = [0.0] * n
        self.jump = [0.0] * n
        self.hot = [0] * n  # trades left with surge-sized volume
        self.seq = [0] * n
        self.fmv_index = [self.spec.tick_symbols.index(s) for s in self.spec.fmv_symbols]

    def _init_bars(self, rng: random.Random) -> None:
        n = len(self.spec.ohlcv_symbols)
        self.bar_anchor = [round(math.exp(rng.uniform(math.log(5), math.log(500))), 2) for _ in range(n)]
        self.bar_close = list(self.bar_anchor)
        self.bar_volume = [float(rng.choice((2_000, 5_000, 20_000, 100_000, 400_000))) for _ in range(n)]
        self.bar_drift = [0.0] * n
        last_end = spec_floor(self.spec.start_ns, self.bar_ns)
        self.next_bar_end = last_end + self.bar_ns

    # -- the stream --------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[Record]]:
        yield self.opening()
        while self.end_ns is None or self.clock_ns < self.end_ns:
            yield self.step()

    def opening(self) -> list[Record]:
        """History bars ending at or before start, then one opening trade per tick symbol at start."""
        records: list[Record] = []
        last_end = self.next_bar_end - self.bar_ns
        for k in range(self.spec.history_bars - 1, -1, -1):
            records.extend(self.bars(last_end - k * self.bar_ns))
        for s, ticker in enumerate(self.spec.tick_symbols):
            self.seq[s] += 1
            records.append(Trade(ticker, self.price[s], 100.0, self.spec.start_ns, 1, (), self.seq[s]))
        return records

    def step(self) -> list[Record]:
        """The records of the next slice of event time."""
        start, end = self.clock_ns, self.clock_ns + self.slice_ns
        dt = self.slice_ns / NS
        self._switch_regimes(dt)
        records = self.trades(start, end, self._count("trades", self.trade_rate * dt))
        records.extend(self.fmv_updates(end, self._count("fmv", self.fmv_rate * dt)))
        while self.next_bar_end <= end:
            records.extend(self.bars(self.next_bar_end))
            self.next_bar_end += self.bar_ns
        self.clock_ns = end
        return records

    def _count(self, what: str, expected: float) -> int:
        """Deterministic counts whose running total follows the expected rate."""
        self._carry[what] += expected
        n = int(self._carry[what])
        self._carry[what] -= n
        return n

    def _switch_regimes(self, dt: float) -> None:
        n, rng = len(self.spec.tick_symbols), self.rng
        if not n:
            return
        for s in rng.choices(range(n), k=self._count("regimes", n * dt / 120)):
            per_s = rng.choice((0.0, 0.0, 1.0, -1.0)) * rng.uniform(0.00003, 0.00008) * self.spec.volatility
            self.drift[s] = per_s * self.interval[s]
        for s in rng.choices(range(n), k=self._count("jumps", n * dt / self.spec.jump_every_s)):
            self.jump[s] = rng.choice((1.0, -1.0)) * rng.uniform(0.03, 0.06)
            self.hot[s] = 8

    def trades(self, start: int, end: int, n: int) -> list[Record]:
        if n == 0:
            return []
        rng, tickers = self.rng, self.spec.tick_symbols
        syms = rng.choices(range(len(tickers)), cum_weights=self.cum_weights, k=n)
        zs, sizes, exchanges = rng.choices(NORMALS, k=n), rng.choices(SIZES, k=n), rng.choices(EXCHANGES, k=n)
        price, anchor, drift, sigma, revert = self.price, self.anchor, self.drift, self.sigma, self.revert
        jump, hot, seq = self.jump, self.hot, self.seq
        step = (end - start) / (n + 1)
        out: list[Record] = []
        for i in range(n):
            s = syms[i]
            p = price[s]
            p *= 1.0 + drift[s] + sigma[s] * zs[i] - revert[s] * (p / anchor[s] - 1.0) + jump[s]
            price[s] = p = max(p, 0.01)
            size = float(sizes[i])
            if hot[s]:
                jump[s] = 0.0
                hot[s] -= 1
                size *= 6
            seq[s] += 1
            out.append(
                Trade(
                    tickers[s],
                    round(p, 2 if p >= 1 else 4),
                    size,
                    int(start + step * (i + 1)),
                    exchanges[i],
                    (),
                    seq[s],
                )
            )
        return out

    def fmv_updates(self, at: int, n: int) -> list[Record]:
        if n == 0 or not self.fmv_index:
            return []
        rng, out = self.rng, list[Record]()
        for s in rng.choices(self.fmv_index, k=n):
            if rng.random() < 0.08:  # a dislocation: fair value well away from the market
                dev = rng.choice((1.0, -1.0)) * rng.uniform(0.012, 0.03)
            else:
                dev = 0.003 * rng.choice(NORMALS)
            conf = round(rng.uniform(0.5, 0.79), 2) if rng.random() < 0.1 else round(rng.uniform(0.85, 1.0), 2)
            fmv = round(self.price[s] * (1.0 + dev), 4)
            out.append(FairMarketValue(self.spec.tick_symbols[s], fmv, at, None, conf))
        return out

    def bars(self, end: int) -> list[Record]:
        """One bar per OHLCV symbol over [end - bar, end): mostly quiet, some big, some closing at an extreme."""
        rng, vol, out = self.rng, self.spec.volatility, list[Record]()
        start = end - self.bar_ns
        for s, ticker in enumerate(self.spec.ohlcv_symbols):
            o = self.bar_close[s]
            if rng.random() < 0.02:
                self.bar_drift[s] = rng.choice((0.0, 0.0, 0.003, -0.003)) * vol
            if rng.random() < 0.06:
                pct = rng.choice((1.0, -1.0)) * rng.uniform(0.022, 0.05)
            else:
                pct = self.bar_drift[s] + 0.004 * vol * rng.choice(NORMALS) - 0.02 * (o / self.bar_anchor[s] - 1)
            c = round(max(o * (1.0 + pct), 0.01), 2)
            wick = o * 0.002 * vol
            high = round(max(o, c) + wick * rng.random(), 2)
            low = round(max(min(o, c) - wick * rng.random(), 0.005), 2)
            if abs(c - o) >= 0.01 * o and rng.random() < 0.35:  # close at the bar's extreme
                high, low = (c, low) if c > o else (high, c)
            high, low = max(high, o, c), min(low, o, c)
            volume = self.bar_volume[s] * (0.7 + 0.6 * rng.random())
            if rng.random() < 0.05:
                volume *= rng.uniform(4.0, 8.0)
            volume = float(int(volume))
            vwap = round((high + low + c) / 3, 4)
            out.append(Bar(ticker, o, high, low, c, volume, start, end, vwap, None, max(1, int(volume) // 120)))
            self.bar_close[s] = c
        return out


def spec_floor(t: int, unit: int) -> int:
    """`t` rounded down to a multiple of `unit`."""
    return t - t % unit
