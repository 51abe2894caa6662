"""Property: every detector matches a plain reference (lists, full scans, no caches) on random streams."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickmesh.config import FmvChannel, FmvRules, OhlcvChannel, OhlcvRules, TickChannel, TickRules
from tickmesh.schema import Bar, Event, FairMarketValue, Trade
from workers.detectors import make_detector

EPS = 1e-9
S = 1_000_000_000
DAY = 86_400 * S
T0 = 1_700_006_400 * S  # a UTC midnight
PROPERTY = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def gate(move: float, ref: float, pct: float, usd: float) -> bool:
    return move > 0 and (move >= usd - EPS or move / ref * 100.0 >= pct - EPS)


def band(rules: TickRules, price: float) -> int:
    edges = [rules.band1_below, rules.band2_below, rules.band3_below, rules.band4_below, rules.band5_below]
    return next((k for k, edge in enumerate(edges, 1) if price < edge), 6)


def gate_of(rules: TickRules, kind: str, price: float) -> tuple[float, float]:
    k = band(rules, price)
    return getattr(rules, f"band{k}_{kind}_pct"), getattr(rules, f"band{k}_{kind}_usd")


def ev(kind: str, source: str, ticker: str, cause: Any, time: int, price: float, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "id": f"{source}:{kind}:{ticker}:{cause}", "time": time, "price": price, **fields}


def as_dicts(events: list[Event]) -> list[dict[str, Any]]:
    out = []
    for e in events:
        d = msgspec.to_builtins(e)
        for key in ("ticker", "source", "priority", "record_seq", "ingest_ns", "detected_ns"):
            d.pop(key)
        out.append(d)
    return out


def run(detector: Any, records: list[Any]) -> list[Event]:
    return [e for i, rec in enumerate(records) for e in detector.process(rec, i, 0, 0)]


# -- TICK reference --------------------------------------------------------------------------
@dataclass
class Session:
    day: int
    trades: list[tuple[int, float, float]] = field(default_factory=list)  # (r, price, size)
    slots: list[tuple[int, float, float]] = field(default_factory=list)  # first trade per slot: (r, price, cum vol)
    hi: float = 0.0
    lo: float = 0.0
    rhi: float = 0.0
    rlo: float = 0.0
    hit: int | None = None
    lot: int | None = None
    hic: int = 0
    loc: int = 0
    tdir: int = 0
    tlast: int = 0
    slast: int | None = None
    volume: float = 0.0


class RefTick:
    """The TICK rules as written in docs/events.md, on full per-session trade lists."""

    def __init__(self, rules: TickRules) -> None:
        self.rules, self.sessions = rules, {}  # type: ignore[var-annotated]

    def process(self, tr: Trade) -> list[dict[str, Any]]:
        rules = self.rules
        offset = rules.session_start_s * S
        day = (tr.timestamp - offset) // DAY * DAY + offset
        s = self.sessions.get(tr.ticker)
        if s is None or s.day < day:
            s = self.sessions[tr.ticker] = Session(day)
        elif s.day > day:
            return []
        r, price, out = tr.timestamp - day, tr.price, []
        cause = str(tr.timestamp) if tr.sequence is None else f"{tr.timestamp}.{tr.sequence}"
        if not s.trades:
            s.hi = s.lo = s.rhi = s.rlo = price
        elif price > s.hi:
            s.hi = price
            cooled = s.hit is None or r - s.hit >= round(rules.cooldown_s * S)
            if rules.high_low_enabled and cooled and gate(price - s.rhi, s.rhi, *gate_of(rules, "high_low", price)):
                s.hic += 1
                out.append(ev("high", "tick", tr.ticker, cause, tr.timestamp, price, previous=s.rhi, count=s.hic))
                s.rhi, s.hit = price, r
        elif price < s.lo:
            s.lo = price
            cooled = s.lot is None or r - s.lot >= round(rules.cooldown_s * S)
            if rules.high_low_enabled and cooled and gate(s.rlo - price, s.rlo, *gate_of(rules, "high_low", price)):
                s.loc += 1
                out.append(ev("low", "tick", tr.ticker, cause, tr.timestamp, price, previous=s.rlo, count=s.loc))
                s.rlo, s.lot = price, r
        s.trades.append((r, price, tr.size))
        s.volume += tr.size
        slot_ns = rules.surge_resolution_ms * 1_000_000
        if not s.slots or r // slot_ns != s.slots[-1][0] // slot_ns:
            s.slots.append((r, price, s.volume))
        if rules.trend_enabled:
            out += self.trend(s, tr, r, cause)
        if rules.surge_enabled:
            out += self.surge(s, tr, r, cause)
        return out

    def trend(self, s: Session, tr: Trade, r: int, cause: str) -> list[dict[str, Any]]:
        rules, g = self.rules, self.rules.trend_bucket_s
        b = r // (g * S)
        windows = (rules.trend_window1_s, rules.trend_window2_s, rules.trend_window3_s)
        inside = [[x for x in s.trades if x[0] // (g * S) >= b - w // g] for w in windows]
        if any(len(w) < rules.trend_min_trades for w in inside):
            return []
        if r - s.trades[0][0] < round(rules.trend_min_history_s * S):
            return []
        (q1, q2, q3), p = (w[0][1] for w in inside), tr.price
        w1, w2, w3 = rules.trend_weight1, rules.trend_weight2, rules.trend_weight3
        score = w1 * ((p - q1) / q1 * 100.0) + w2 * ((p - q2) / q2 * 100.0) + w3 * ((p - q3) / q3 * 100.0)
        if abs(score) < rules.trend_threshold - EPS or score == 0:
            return []
        direction = 1 if score > 0 else -1
        if direction == s.tdir and r - s.tlast < round(rules.trend_interval_s * S):
            return []
        s.tdir, s.tlast = direction, r
        strength = "strong" if abs(score) >= rules.trend_strong - EPS else "moderate"
        return [
            ev(
                "trend",
                "tick",
                tr.ticker,
                cause,
                tr.timestamp,
                p,
                direction="up" if direction > 0 else "down",
                score=score,
                strength=strength,
            )
        ]

    def surge(self, s: Session, tr: Trade, r: int, cause: str) -> list[dict[str, Any]]:
        rules = self.rules
        if s.slast is not None and r - s.slast < round(rules.surge_cooldown_s * S):
            return []
        lookback = max(1, round(rules.surge_lookback_s * S))
        older = [e for e in s.slots if e[0] <= r - lookback]
        if not older:
            return []
        _, base, base_volume = older[-1]
        move = tr.price - base
        if not gate(abs(move), base, *gate_of(rules, "surge", tr.price)):
            return []
        s.slast = r
        g = rules.trend_bucket_s * S
        b, first = r // g, s.trades[0][0] // g
        nv = max(1, math.ceil(rules.surge_volume_window_s / rules.trend_bucket_s - 1e-9))
        oldest = max(b - nv + 1, first)
        window = sum(x[2] for x in s.trades if x[0] // g >= oldest)
        average = window / ((b - oldest + 1) * g / lookback)
        ratio = (s.volume - base_volume) / average if average > 0 else 0.0
        return [
            ev(
                "surge",
                "tick",
                tr.ticker,
                cause,
                tr.timestamp,
                tr.price,
                direction="up" if move > 0 else "down",
                move_pct=move / base * 100.0,
                volume_ratio=ratio,
            )
        ]


@st.composite
def tick_rules(draw: st.DrawFn) -> TickRules:
    if draw(st.booleans()):
        return TickRules(session_start_s=draw(st.sampled_from([0, 52_200])))
    bucket = draw(st.sampled_from([1, 2, 60]))
    w1 = bucket * draw(st.integers(1, 4))
    w2 = w1 + bucket * draw(st.integers(1, 4))
    w3 = w2 + bucket * draw(st.integers(1, 4))
    return TickRules(
        session_start_s=draw(st.sampled_from([0, 3_600])),
        cooldown_s=draw(st.sampled_from([0.0, 0.5, 1.0])),
        trend_bucket_s=bucket,
        trend_window1_s=w1,
        trend_window2_s=w2,
        trend_window3_s=w3,
        trend_weight1=draw(st.sampled_from([0.0, 0.3, 1.0])),
        trend_weight2=0.4,
        trend_weight3=0.3,
        trend_min_history_s=draw(st.sampled_from([0.0, 3.0, float(w1)])),
        trend_min_trades=draw(st.integers(1, 6)),
        trend_threshold=draw(st.sampled_from([0.05, 0.3, 1.0])),
        trend_strong=0.6,
        trend_interval_s=draw(st.sampled_from([0.0, 2.0, 60.0])),
        surge_lookback_s=draw(st.sampled_from([0.5, 1.0, 5.0])),
        surge_resolution_ms=draw(st.sampled_from([50, 250, 1000])),
        surge_volume_window_s=draw(st.sampled_from([1.0, 3.0, 60.0])),
        surge_cooldown_s=draw(st.sampled_from([0.0, 3.0, 60.0])),
        high_low_enabled=draw(st.booleans()),
    )


@st.composite
def trade_streams(draw: st.DrawFn) -> list[Trade]:
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.sampled_from([3, 60, 250, 400]))
    tickers = ["A", "B", "C"][: draw(st.integers(1, 3))]
    price = {t: draw(st.sampled_from([0.5, 0.999, 3.0, 4.995, 20.0, 99.9, 250.0, 499.95, 800.0])) for t in tickers}
    gap_s = draw(st.sampled_from([0.01, 0.2, 1.0, 5.0]))
    grid = draw(st.sampled_from([1, 50_000_000, 250_000_000, S]))  # on a grid, windows' edges get hit exactly
    vol = draw(st.sampled_from([0.0005, 0.003, 0.02]))
    t, out = T0 + rnd.randrange(DAY) // grid * grid, []
    for k in range(n):
        roll = rnd.random()
        t += 0 if roll < 0.1 else DAY // 2 if roll < 0.11 else int(rnd.expovariate(1 / gap_s) * S) // grid * grid
        ticker = rnd.choice(tickers)
        jump = rnd.choice((-0.05, 0.05, 0.0, 0.0)) if rnd.random() < 0.03 else 0.0
        price[ticker] = max(0.0101, round(price[ticker] * (1 + rnd.gauss(0, vol) + jump), 4))
        seq = k if rnd.random() < 0.5 else None
        out.append(Trade(ticker, price[ticker], float(rnd.randrange(0, 1000)), t, sequence=seq))
    return out


def reference_tick(rules: TickRules, trades: list[Trade]) -> list[dict[str, Any]]:
    ref = RefTick(rules)
    return [e for tr in trades for e in ref.process(tr)]


@PROPERTY
@given(tick_rules(), trade_streams())
def test_tick_matches_reference(rules: TickRules, trades: list[Trade]) -> None:
    got = as_dicts(run(make_detector("tick", TickChannel(rules=rules)), trades))
    assert got == reference_tick(rules, trades)


@PROPERTY
@given(tick_rules(), trade_streams(), st.floats(0, 1))
def test_tick_snapshot_restore_mid_stream(rules: TickRules, trades: list[Trade], where: float) -> None:
    cut = int(len(trades) * where)
    whole = run(make_detector("tick", TickChannel(rules=rules)), trades)
    first = make_detector("tick", TickChannel(rules=rules))
    head = run(first, trades[:cut])
    second = make_detector("tick", TickChannel(rules=rules))
    second.restore(first.snapshot())
    tail = [e for i, tr in enumerate(trades[cut:], cut) for e in second.process(tr, i, 0, 0)]
    assert head + tail == whole


# -- OHLCV reference --------------------------------------------------------------------------
def reference_ohlcv(rules: OhlcvRules, bars: list[Bar]) -> list[dict[str, Any]]:
    seen: dict[str, list[Bar]] = {}
    done: dict[str, int] = {}  # ticker -> where the run already reported started
    out: list[dict[str, Any]] = []
    for bar in bars:
        history = seen.setdefault(bar.ticker, [])
        if history and bar.end <= history[-1].end:
            continue
        o, c, end = bar.open, bar.close, bar.end
        pct = (c - o) / o * 100.0
        if abs(pct) > rules.big_move_pct + EPS:
            out.append(ev("big_move", "ohlcv", bar.ticker, end, end, c, direction="up" if pct > 0 else "down", pct=pct))
        if bar.high != bar.low and abs(pct) >= rules.close_at_extreme_pct - EPS:
            if c == bar.high:
                out.append(ev("high", "ohlcv", bar.ticker, end, end, c, pct=pct))
            elif c == bar.low:
                out.append(ev("low", "ohlcv", bar.ticker, end, end, c, pct=pct))
        previous = history[-rules.volume_window :]
        if len(history) >= rules.volume_min_bars and previous:
            mean = math.fsum(b.volume for b in previous) / len(previous)
            if mean > 0 and bar.volume / mean > rules.volume_surge_ratio + EPS:
                out.append(
                    ev(
                        "volume_surge",
                        "ohlcv",
                        bar.ticker,
                        end,
                        end,
                        c,
                        volume=bar.volume,
                        ratio=bar.volume / mean,
                        average=mean,
                    )
                )
        history.append(bar)
        closes = [b.close for b in history]
        if len(closes) < 2 or closes[-1] == closes[-2]:
            continue
        up = closes[-1] > closes[-2]
        start = len(closes) - 1  # the strict run ending here starts at `start`
        while start > 0 and (closes[start] > closes[start - 1] if up else closes[start] < closes[start - 1]):
            start -= 1
        if rules.detect_trends and len(closes) - start >= rules.trend_bars and done.get(bar.ticker) != start:
            first = closes[-rules.trend_bars]
            move = (c - first) / first * 100.0
            if abs(move) >= rules.trend_min_pct - EPS:
                done[bar.ticker] = start
                out.append(ev("trend", "ohlcv", bar.ticker, end, end, c, direction="up" if up else "down", pct=move))
    return out


@st.composite
def bar_streams(draw: st.DrawFn) -> list[Bar]:
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    tickers = ["A", "B"][: draw(st.integers(1, 2))]
    close = {t: 100.0 for t in tickers}
    end = {t: T0 for t in tickers}
    out = []
    for _ in range(draw(st.sampled_from([2, 40, 120]))):
        t = rnd.choice(tickers)
        o = close[t] if rnd.random() < 0.7 else round(close[t] * (1 + rnd.gauss(0, 0.01)), 2)
        c = round(o * (1 + rnd.choice([0.0, 0.01, -0.01, 0.02, -0.02, 0.021, 0.005, rnd.gauss(0, 0.02)])), 2)
        hi = max(o, c) + (0.0 if rnd.random() < 0.5 else 0.01)
        lo = min(o, c) - (0.0 if rnd.random() < 0.5 else 0.01)
        step = rnd.choice([60, 60, 60, 0, -60]) * S  # a few duplicates and out-of-order bars
        end[t] += step
        volume = float(rnd.choice([0, 100, 100, 300, 301, rnd.randrange(1, 2000)]))
        out.append(Bar(t, o, hi, lo, c, volume, end[t] - 60 * S, end[t]))
        close[t] = c
    return out


@st.composite
def ohlcv_rules(draw: st.DrawFn) -> OhlcvRules:
    return OhlcvRules(
        detect_trends=draw(st.booleans()),
        trend_bars=draw(st.integers(2, 5)),
        volume_min_bars=draw(st.integers(1, 6)),
        volume_window=draw(st.integers(1, 10)),
        trend_min_pct=draw(st.sampled_from([0.0, 1.0, 3.0])),
    )


@PROPERTY
@given(ohlcv_rules(), bar_streams(), st.floats(0, 1))
def test_ohlcv_matches_reference_and_restores(rules: OhlcvRules, bars: list[Bar], where: float) -> None:
    det = make_detector("ohlcv", OhlcvChannel(rules=rules))
    whole = run(det, bars)
    assert as_dicts(whole) == reference_ohlcv(rules, bars)
    cut = int(len(bars) * where)
    first = make_detector("ohlcv", OhlcvChannel(rules=rules))
    head = run(first, bars[:cut])
    second = make_detector("ohlcv", OhlcvChannel(rules=rules))
    second.restore(first.snapshot())
    assert head + [e for i, b in enumerate(bars[cut:], cut) for e in second.process(b, i, 0, 0)] == whole


# -- FMV reference ------------------------------------------------------------------------------
def reference_fmv(rules: FmvRules, updates: list[FairMarketValue]) -> list[dict[str, Any]]:
    last: dict[str, tuple[int, str]] = {}
    out = []
    for u in updates:
        confidence = 1.0 if u.confidence is None else u.confidence
        if confidence < rules.confidence_min or u.market_price is None:
            continue
        deviation = (u.fmv - u.market_price) / u.market_price * 100.0
        if abs(deviation) <= rules.deviation_pct + EPS:
            continue
        side = "overvalued" if u.fmv > u.market_price else "undervalued"
        prior = last.get(u.ticker)
        if prior and prior[1] == side and u.timestamp - prior[0] < round(rules.cooldown_s * S):
            continue
        last[u.ticker] = (u.timestamp, side)
        out.append(
            ev(
                "fmv_deviation",
                "fmv",
                u.ticker,
                u.timestamp,
                u.timestamp,
                u.fmv,
                direction=side,
                fmv=u.fmv,
                market_price=u.market_price,
                deviation=deviation,
                confidence=confidence,
            )
        )
    return out


@st.composite
def fmv_streams(draw: st.DrawFn) -> list[FairMarketValue]:
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    t, out = T0, []
    for _ in range(draw(st.sampled_from([2, 40, 150]))):
        t += rnd.choice([0, S, 10 * S, 30 * S, 60 * S])
        market = rnd.choice([None, 100.0, 100.0, 50.0])
        fmv = round(100.0 * (1 + rnd.choice([0.0, 0.01, -0.01, 0.0101, -0.0101, 0.05, -0.05])), 4)
        confidence = rnd.choice([None, 0.8, 0.7999, 0.95, 1.0])
        out.append(FairMarketValue(rnd.choice("AB"), fmv, t, market_price=market, confidence=confidence))
    return out


@PROPERTY
@given(st.sampled_from([0.0, 30.0, 60.0]), fmv_streams(), st.floats(0, 1))
def test_fmv_matches_reference_and_restores(cooldown: float, updates: list[FairMarketValue], where: float) -> None:
    rules = FmvRules(cooldown_s=cooldown)
    whole = run(make_detector("fmv", FmvChannel(rules=rules)), updates)
    assert as_dicts(whole) == reference_fmv(rules, updates)
    cut = int(len(updates) * where)
    first = make_detector("fmv", FmvChannel(rules=rules))
    head = run(first, updates[:cut])
    second = make_detector("fmv", FmvChannel(rules=rules))
    second.restore(first.snapshot())
    assert head + [e for i, u in enumerate(updates[cut:], cut) for e in second.process(u, i, 0, 0)] == whole
