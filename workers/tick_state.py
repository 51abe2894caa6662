"""What every TICK rule shares: the per-ticker state layout and rings, the price-band gate, the event cause."""

from __future__ import annotations

import math
from array import array
from typing import Any

from tickmesh.config import TickRules
from tickmesh.schema import Trade

DAY_NS = 86_400 * 1_000_000_000
EPS = 1e-9  # within EPS of a threshold counts as on it: decimal prices meet binary floats
INF = math.inf
NEVER = -1e18  # the time of "no event yet": every cooldown has passed
# A ticker's state is itself one float array (one allocation, contiguous, nothing boxed) of its
# scalars; times in it are ns since the session start, exact in a float. While a trade is before WAKE
# and strictly inside (PMIN, PMAX) no rule can fire and no window moves: the hot path only counts it.
# N counts the trades of the current trend bucket TB (the buckets before it are counted in the
# trend ring array, below). After the scalars the same array holds the volume ring, indexed by
# trend bucket (bucket % size): the session's cumulative volume before each of the last
# volume-window buckets, BEFORE for a bucket before the windows' first. TB and P3 (the first bucket
# with trades in the largest trend window) are buckets. Nothing is kept that a few operations on
# the rest give: the end of bucket TB, when a trend or a surge may fire again (trend_gates,
# surge_gate: workers/tick_windows.py), the smaller windows' first buckets with trades (the ring's
# first entry not EMPTY from the window's start or P3), the volume window's first bucket (its
# first entry not BEFORE). The trend's direction is the state's `tdir`.
# fmt: off
(WAKE, PMAX, PMIN, N, CV,
 LAST, FIRST, HI, LO, RHI, RLO, HIT, LOT, HIC, LOC,
 TB, P3, TUP, TDN, TLAST,
 SS_END, SH, SO, SELIG, RMIN, RMAX, SUP, SDN, SLAST, WAKE2, QSEQ, PB, NFIELDS) = range(33)
# fmt: on
BEFORE = -1.0  # a volume ring entry of a bucket before the windows' first (no cumulative volume is negative)
# The trend ring array `tr` holds, at bucket % cap for its `cap` buckets, the first price of
# each bucket, in ten-thousandths (ticks) while every price written to it is a whole number of them:
# int16 ticks - PB while they span less than 2**16 (PB re-centred as needed), else int32 ticks; a
# price that is not turns it into doubles. Each holds exactly the prices written; a bucket without
# trades holds EMPTY of its typecode. After the prices, at cap + bucket % (window-1 buckets), the
# trade count of each bucket of window 1 before TB (a count past the typecode's COUNT_MAX widens it).
TICKS = 10_000.0
EMPTY: dict[str, Any] = {"h": -0x8000, "i": 0, "d": 0.0}
COUNT_MAX: dict[str, float] = {"h": 0x7FFF, "i": 0x7FFFFFFF, "d": INF}
# The surge ring `sr` holds one entry per slot with trades, at (SH % capacity) * stride: while every
# price written to it is a whole number of ticks below 2**31 and every cumulative volume a whole
# number below 2**32, two int64 per entry ("q": time, ticks | volume << 31), else three doubles
# ("d": time, price, volume). Times are ns since the session start, exact either way.
STRIDE = {"q": 2, "d": 3}
MASK = 0x7FFFFFFF  # a packed entry's ticks (its volume is the rest, shifted by 31)


def cause_of(trade: Trade) -> str:
    """The id cause of a trade: its timestamp, with the source's sequence number when it has one."""
    return str(trade.timestamp) if trade.sequence is None else f"{trade.timestamp}.{trade.sequence}"


class Bands:
    """The price-band table: the gate of band i is (min %, min $) for high/low and for surge."""

    __slots__ = ("edges", "hl_pct", "hl_usd", "sg_pct", "sg_usd")

    def __init__(self, rules: TickRules) -> None:
        get = rules.__getattribute__
        self.edges = tuple(get(f"band{k}_below") for k in range(1, 6))
        self.hl_pct = tuple(get(f"band{k}_high_low_pct") for k in range(1, 7))
        self.hl_usd = tuple(get(f"band{k}_high_low_usd") for k in range(1, 7))
        self.sg_pct = tuple(get(f"band{k}_surge_pct") for k in range(1, 7))
        self.sg_usd = tuple(get(f"band{k}_surge_usd") for k in range(1, 7))

    def band(self, price: float) -> int:
        """The band of a price: the first whose upper edge is above it (band 6, index 5, for the rest)."""
        i = 0
        for edge in self.edges:
            if price < edge:
                return i
            i += 1
        return i


def passes(move: float, ref: float, pct: float, usd: float) -> bool:
    """The gate: an (absolute) move from `ref` reaches the dollar OR the percent minimum."""
    return move > 0.0 and (move >= usd - EPS or move / ref * 100.0 >= pct - EPS)


class TickState(array):  # type: ignore[type-arg]
    """One ticker's session: the float array of its scalars and volume ring (indexes above) that
    also holds its day start, trend ring array, surge ring and last trend's direction.

    `tr` holds the first price of each trend bucket and the trade counts of window 1 (see TICKS),
    empty until the first bucket; `sr` holds (time, price, cumulative volume after it) of the first
    trade of each surge slot (see STRIDE); `tdir` is 1 or -1 (up, down), 0 before the first trend.
    One object, not a record of four: the array with four slots takes 112 bytes where a Struct and
    the scalars' own array took 48 + 80 (docs/benchmarks.md). Build it with `state` (exact size).
    """

    __slots__ = ("day", "tr", "sr", "tdir")
    day: int
    tr: array[Any]
    sr: array[Any]
    tdir: int


def state(day: int, values: list[float] | array[float], tr: array[Any], sr: array[Any], tdir: int) -> TickState:
    """A state of exactly these values (built from a list or an array, it has no spare room)."""
    st = TickState("d", values)
    st.day, st.tr, st.sr, st.tdir = day, tr, sr, tdir
    return st


def new_state(day: int, r: int, price: float, size: int) -> TickState:
    """The state of a ticker's first trade of a session (at r ns after `day`); `size` slots."""
    a = [0.0] * NFIELDS
    a[LAST] = a[FIRST] = r
    a[HI] = a[LO] = a[RHI] = a[RLO] = price
    a[HIT] = a[LOT] = a[TLAST] = a[SLAST] = NEVER
    a[QSEQ] = -1.0  # the highest source sequence applied this session (exact in a float below 2**53)
    return _empty_windows(day, a, 0, size)


def reset_windows(st: TickState, size: int) -> TickState:
    """The state with its trend, volume and surge windows empty (their layout changed, or they were
    saved by an older version) and the trend's history restarting with them; the other scalars
    stay, in `size` slots. A new object: an array resized in place keeps spare room."""
    a = st[:NFIELDS].tolist()
    a[FIRST] = a[LAST]
    return _empty_windows(st.day, a, st.tdir, size)


def _empty_windows(day: int, a: list[float], tdir: int, size: int) -> TickState:
    a[WAKE] = a[WAKE2] = a[SS_END] = NEVER
    a[PMAX], a[PMIN] = -INF, INF
    a[TB] = -1
    a[N] = a[P3] = a[SH] = a[SO] = 0.0
    a[TUP] = a[SUP] = a[SELIG] = a[RMIN] = INF
    a[TDN] = a[SDN] = a[RMAX] = -INF
    return state(day, a + [BEFORE] * (size - NFIELDS), array("h"), array("q"), tdir)


def new_ring(cap: int, counted: int) -> array[int]:
    """An int16 trend ring array of `cap` empty buckets and `counted` zero trade counts."""
    return array("h", [-0x8000] * cap + [0] * counted)


def ring_value(st: TickState, price: float, cap: int) -> tuple[array[Any], float]:
    """`price` as the trend ring stores it, once the ring can hold it exactly (re-centred or widened)."""
    tr, a = st.tr, st
    if tr.typecode == "d":
        return tr, price
    k = round(price * TICKS)
    if k / TICKS != price or not 0 < k < 0x7FFFFFFF:
        tr = st.tr = widen(tr, a, "d", cap)
        return tr, price
    if tr.typecode == "i":
        return tr, k
    v = k - int(a[PB])
    if -0x8000 < v < 0x8000:
        return tr, v
    tr = st.tr = _recentre(tr, a, k, cap)
    return tr, k - int(a[PB])


def _recentre(tr: array[Any], a: array[float], k: int, cap: int) -> array[Any]:
    """An int16 ring whose prices and `k` span less than 2**16 ticks, around their middle; else int32."""
    pb = int(a[PB])
    ticks = [v + pb for v in tr[:cap] if v != -0x8000] + [k]
    lo, hi = min(ticks), max(ticks)
    if hi - lo >= 0xFFFF:
        return widen(tr, a, "i", cap)
    mid = a[PB] = (lo + hi) // 2
    return array("h", [v if v == -0x8000 else v + pb - mid for v in tr[:cap]] + tr[cap:].tolist())


def widen(tr: array[Any], a: array[float], code: str, cap: int) -> array[Any]:
    """The same prices as int32 ticks ("i") or doubles ("d"), and the same counts; PB is then 0."""
    pb, empty, scale = a[PB], EMPTY[tr.typecode], 1.0 if tr.typecode == "d" else TICKS
    a[PB] = 0.0
    counts = tr[cap:].tolist()
    if code == "i":
        return array("i", [0 if v == empty else int(v + pb) for v in tr[:cap]] + counts)
    return array("d", [0.0 if v == empty else (v + pb) / scale for v in tr[:cap]] + counts)


def count_put(st: TickState, cap: int, i: int, n: int) -> None:
    """Trade count `n` at count position `i` of the trend ring array, widened first if it must be."""
    tr = st.tr
    if n > COUNT_MAX[tr.typecode]:
        tr = st.tr = widen(tr, st, "i" if n <= COUNT_MAX["i"] else "d", cap)
    tr[cap + i] = n


def surge_put(st: TickState, i: int, cap: int, r: int, price: float, cv: float) -> None:
    """Surge ring entry `i` (of `cap`) becomes (r, price, cv): packed while exact, else doubles."""
    sr = st.sr
    if sr.typecode == "q":
        k, v = round(price * TICKS), int(cv)
        if k / TICKS == price and v == cv and k <= MASK and not v >> 32:  # (prices are positive)
            j, packed = i * 2, k | v << 31
            if j < len(sr):
                sr[j], sr[j + 1] = r, packed
            else:
                _append(st, (r, packed), cap * 2)
            return
        sr = st.sr = _widen_surge(sr)
    j = i * 3
    if j < len(sr):
        sr[j], sr[j + 1], sr[j + 2] = r, price, cv
    else:
        _append(st, (r, price, cv), cap * 3)


def _append(st: TickState, entry: tuple[Any, ...], full: int) -> None:
    """A new entry at the end of a surge ring still filling (no spare room once full)."""
    sr = st.sr
    sr.extend(entry)
    if len(sr) == full:  # full for good: drop the spare room extends keep
        st.sr = array(sr.typecode, sr.tolist())


def _widen_surge(sr: array[Any]) -> array[float]:
    """The same entries as three doubles each."""
    v = sr.tolist()
    return array("d", [x for t, w in zip(v[::2], v[1::2], strict=True) for x in (t, (w & MASK) / TICKS, w >> 31)])


def surge_price(sr: array[Any], i: int) -> float:
    """The price of surge ring entry i."""
    return (sr[i * 2 + 1] & MASK) / TICKS if sr.typecode == "q" else sr[i * 3 + 1]


def surge_volume(sr: array[Any], i: int) -> float:
    """The cumulative volume after surge ring entry i."""
    return float(sr[i * 2 + 1] >> 31) if sr.typecode == "q" else sr[i * 3 + 2]
