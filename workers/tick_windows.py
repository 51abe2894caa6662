"""TICK trend and surge windows over a ticker's two rings: mixins of TickDetector (workers/tick_rules.py)."""

from __future__ import annotations

from array import array
from typing import Any

from tickmesh.config import TickRules
from tickmesh.schema import Event, Source, Surge, Trade, Trend, event_id
from workers.tick_state import (
    BEFORE,
    COUNT_MAX,
    CV,
    EMPTY,
    EPS,
    FIRST,
    INF,
    LAST,
    MASK,
    NFIELDS,
    P3,
    PB,
    PMAX,
    PMIN,
    RMAX,
    RMIN,
    SDN,
    SELIG,
    SH,
    SLAST,
    SO,
    SS_END,
    SUP,
    TB,
    TDN,
    TICKS,
    TLAST,
    TUP,
    WAKE,
    WAKE2,
    Bands,
    N,
    TickState,
    cause_of,
    count_put,
    new_ring,
    passes,
    ring_value,
    surge_price,
    surge_put,
    surge_volume,
)

Envelope = tuple[str, str, Source, int, int, float, int, int, int]


class TickRuleBase:
    """What the windows read from the detector: the settings TickDetector.configure derives from
    the rules, and the envelope every tick event starts with."""

    rules: TickRules
    priority: int
    bands: Bands
    surge_on: bool
    bucket_ns: int  # trend bucket width
    spans: tuple[int, int, int]  # the three trend windows, in buckets
    weights: tuple[float, float, float]
    history_ns: int
    interval_ns: int
    nv: int  # the surge volume window, in buckets: the volume ring's size
    tcap: int  # trend ring capacity, in buckets
    cw: int  # window 1's buckets before the current one: the trade counts after the trend ring
    lookback_ns: int
    slot_ns: int  # surge ring slot width
    scap: int  # surge ring capacity, in slots
    surge_cd_ns: int

    def _envelope(self, kind: str, tr: Trade, env: tuple[int, ...]) -> Envelope:
        """An event's common fields in EventBase order: id, ticker, source, priority, time, price,
        then `env` (record_seq, ingest_ns, detected_ns)."""
        return (event_id("tick", kind, tr.ticker, cause_of(tr)), tr.ticker, "tick", self.priority, tr.timestamp,
                tr.price, env[0], env[1], env[2])  # fmt: skip


class TrendWindows(TickRuleBase):
    """The trend rule: three windows over the trend ring, a price filter, and the weighted score."""

    def _roll(self, st: TickState, r: int, price: float) -> None:
        """A trade in a new bucket: record the volume before it, append its price, count the trades
        of the bucket that ended, move the largest window's first bucket, refresh the filter."""
        nv = self.nv
        b, last = r // self.bucket_ns, int(st[TB])
        st[TB] = b
        if b == last + 1:  # the common case: the next bucket
            st[NFIELDS + b % nv] = st[CV]
        else:  # buckets without trades share the next one's volume (those before the first: BEFORE)
            cv = st[CV]
            for x in range(max(last + 1 if last >= 0 else b, b - nv + 1), b + 1):
                st[NFIELDS + x % nv] = cv
        tr = self._append(st, last, b, price)
        self._count(st, last, b)
        p, cap, empty = int(st[P3]), self.tcap, EMPTY[tr.typecode]
        p = p if p > b - self.spans[2] else b - self.spans[2]
        while tr[p % cap] == empty:  # the first bucket with trades inside the largest window
            p += 1
        st[P3] = p
        self._trend_filter(st)

    def _append(self, st: TickState, last: int, b: int, price: float) -> array[Any]:
        """Bucket b's first price joins the trend ring (`last`, the newest bucket before it, or -1)."""
        cap = self.tcap
        if last < 0 or b - last >= cap:  # no bucket in the ring is inside a window any more: start over
            st.tr = new_ring(cap, self.cw)
            st[P3] = b
            last = b - 1
        tr, value = ring_value(st, price, cap)
        if b != last + 1:
            empty = EMPTY[tr.typecode]
            for x in range(last + 1, b):
                tr[x % cap] = empty
        tr[b % cap] = value
        return tr

    def _count(self, st: TickState, last: int, b: int) -> None:
        """Bucket `last` (or -1) ended with N trades, those up to b had none; N starts over for b."""
        cap, cw = self.tcap, self.cw
        n, st[N] = int(st[N]), 0.0
        if b == last + 1 and last >= 0 and n <= COUNT_MAX[st.tr.typecode]:  # the common case
            st.tr[cap + last % cw] = n
            return
        if last >= max(0, b - cw):  # still inside window 1
            count_put(st, cap, last % cw, n)
        tr = st.tr
        for x in range(max(last + 1, b - cw), b):
            tr[cap + x % cw] = 0

    def _firsts(self, st: TickState, tr: array[Any]) -> tuple[int, int, int]:
        """The first bucket with trades of each trend window: P3 for the largest, kept as buckets
        come; each smaller one's from its start or the next larger one's first, whichever is later
        (bucket TB has trades, so every scan ends)."""
        cap, b, p3 = self.tcap, int(st[TB]), int(st[P3])
        (s1, s2, _), empty = self.spans, EMPTY[tr.typecode]
        p2 = b - s2 if b - s2 > p3 else p3
        while tr[p2 % cap] == empty:
            p2 += 1
        p1 = b - s1 if b - s1 > p2 else p2
        while tr[p1 % cap] == empty:
            p1 += 1
        return p1, p2, p3

    def trades_in_window(self, st: TickState) -> float:
        """Trades from the oldest bucket with trades inside the smallest window to this trade."""
        tr, cap, cw, b = st.tr, self.tcap, self.cw, int(st[TB])
        p = self._firsts(st, tr)[0]
        if p == b:
            return st[N]
        i, j = cap + p % cw, cap + b % cw  # buckets p to b - 1
        return st[N] + (sum(tr[i:j]) if i < j else sum(tr[i:]) + sum(tr[cap:j]))

    def _oldest(self, st: TickState) -> tuple[float, float, float]:
        """The oldest price inside each trend window."""
        tr, cap = st.tr, self.tcap
        p1, p2, p3 = self._firsts(st, tr)
        pb, scale = st[PB], 1.0 if tr.typecode == "d" else TICKS
        return (tr[p1 % cap] + pb) / scale, (tr[p2 % cap] + pb) / scale, (tr[p3 % cap] + pb) / scale

    def _trend_filter(self, st: TickState) -> None:
        """Prices beyond which the score may pass the threshold (the score is linear in the price)."""
        (q1, q2, q3), (w1, w2, w3) = self._oldest(st), self.weights
        k = 100.0 * (w1 / q1 + w2 / q2 + w3 / q3)
        c = 100.0 * (w1 + w2 + w3)
        thr = self.rules.trend_threshold
        if not self.rules.trend_enabled or k <= 0.0:
            st[TUP], st[TDN] = INF, -INF
        else:  # generous margins: the exact score decides in _trend
            st[TUP] = (c + thr) / k * (1.0 - 1e-7) - 1e-8
            st[TDN] = (c - thr) / k * (1.0 + 1e-7) + 1e-8

    def trend_gates(self, st: TickState) -> tuple[float, float]:
        """Earliest times an up / down trend may fire: history, and the interval unless it flips."""
        start = st[FIRST] + self.history_ns
        again = max(start, st[TLAST] + self.interval_ns)
        tdir = st.tdir
        return (again if tdir == 1 else start), (again if tdir == -1 else start)

    def score(self, st: TickState, price: float) -> float:
        """The weighted score at `price` (0.3 w180 + 0.4 w360 + 0.3 w600 by default; 1 % = 1.0)."""
        (q1, q2, q3), (w1, w2, w3) = self._oldest(st), self.weights
        return w1 * ((price - q1) / q1 * 100.0) + w2 * ((price - q2) / q2 * 100.0) + w3 * ((price - q3) / q3 * 100.0)

    def _trend(self, st: TickState, tr: Trade, r: int, out: list[Event], env: tuple[int, ...]) -> None:
        rules = self.rules
        if self.trades_in_window(st) < rules.trend_min_trades:
            return
        score = self.score(st, tr.price)
        if abs(score) < rules.trend_threshold - EPS or score == 0.0:
            return
        up = score > 0.0
        if r < self.trend_gates(st)[0 if up else 1]:
            return
        st.tdir, st[TLAST] = (1 if up else -1), r
        strong = abs(score) >= rules.trend_strong - EPS
        out.append(
            Trend(
                *self._envelope("trend", tr, env),
                direction="up" if up else "down",
                score=score,
                strength="strong" if strong else "moderate",
            )
        )


class SurgeWindows(TickRuleBase):
    """The surge rule: the surge ring's baseline, a price filter, and the volume ratio."""

    def _next_slot(self, st: TickState, tr: Trade, r: int) -> None:
        """A trade that only starts a slot: count it, append it, narrow the filter to cover it."""
        st[LAST] = r
        st[N] += 1.0
        st[CV] += tr.size
        self._slot(st, r, tr.price)
        gate = self.surge_gate(st)
        if r >= gate:
            if st[SUP] < st[PMAX]:
                st[PMAX] = st[SUP]
            if st[SDN] > st[PMIN]:
                st[PMIN] = st[SDN]
        elif gate < st[WAKE2]:
            st[WAKE2] = gate
        st[WAKE] = st[SS_END] if st[SS_END] < st[WAKE2] else st[WAKE2]

    def surge_gate(self, st: TickState) -> float:
        """The earliest time a surge may fire: the cooldown since the last, and a baseline to exist."""
        gate = st[SLAST] + self.surge_cd_ns
        return gate if gate > st[SELIG] else st[SELIG]

    def _slot(self, st: TickState, r: int, price: float) -> None:
        """The first trade of a slot joins the ring; the filter widens to cover it."""
        sr, cap = st.sr, self.scap
        head, cv = int(st[SH]), st[CV]
        k, v, j = round(price * TICKS), int(cv), head % cap * 2
        if j < len(sr) and k / TICKS == price and v == cv and k <= MASK and not v >> 32 and sr.typecode == "q":
            sr[j], sr[j + 1] = r, k | v << 31  # the common case, inline: packed exactly (see surge_put)
        else:
            surge_put(st, head % cap, cap, r, price, cv)
        if head - st[SO] >= cap:  # full: the oldest is older than any baseline from now on
            st[SO] = head - cap + 1
        st[SH] = head + 1
        if head == 0:
            st[SELIG] = r + self.lookback_ns  # no baseline before this
        st[SS_END] = (r // self.slot_ns + 1) * self.slot_ns
        if price < st[RMIN]:
            st[RMIN] = price
            st[SUP] = self._surge_up(price) if self.surge_on else INF
        if price > st[RMAX]:
            st[RMAX] = price
            st[SDN] = self._surge_down(price) if self.surge_on else -INF

    def _baseline(self, st: TickState, r: int) -> int:
        """The ring position of the baseline at `r` (the newest entry at least the lookback older),
        or -1; older entries are dropped, as no later trade can need them."""
        sr, cap = st.sr, self.scap
        k = 2 if sr.typecode == "q" else 3  # STRIDE
        cutoff, p, head = r - self.lookback_ns, int(st[SO]), int(st[SH])
        while p + 1 < head and sr[(p + 1) % cap * k] <= cutoff:
            p += 1
        st[SO] = p
        return p if p < head and sr[p % cap * k] <= cutoff else -1

    def _surge_filter(self, st: TickState) -> None:
        """Prices beyond which a move may pass the gate from some ring entry (the baseline is one
        of them until the next check). The bounds grow with the base price, so the lowest and
        highest entries decide."""
        sr, cap = st.sr, self.scap
        live = range(int(st[SO]), int(st[SH]))
        if sr.typecode == "q":  # min and max of the ticks: decoding is exact and keeps the order
            ticks = [sr[p % cap * 2 + 1] & MASK for p in live]
            prices = [min(ticks) / TICKS, max(ticks) / TICKS] if ticks else []
        else:
            prices = [sr[p % cap * 3 + 1] for p in live]
        st[RMIN], st[RMAX] = (min(prices), max(prices)) if prices else (INF, -INF)
        on = self.surge_on and prices
        st[SUP] = self._surge_up(st[RMIN]) if on else INF
        st[SDN] = self._surge_down(st[RMAX]) if on else -INF

    def _surge_up(self, base: float) -> float:
        """Below this price no move up from `base` passes the gate (with margins; past base's
        band the exact check decides)."""
        bands = self.bands
        i = bands.band(base)
        hi = bands.edges[i] if i < len(bands.edges) else INF
        return min(base + min(bands.sg_usd[i], base * bands.sg_pct[i] / 100.0), hi) * (1.0 - 1e-7) - 1e-8

    def _surge_down(self, base: float) -> float:
        """Above this price no move down from `base` passes the gate (the mirror of _surge_up)."""
        bands = self.bands
        i = bands.band(base)
        lo = bands.edges[i - 1] if i else 0.0
        return max(base - min(bands.sg_usd[i], base * bands.sg_pct[i] / 100.0), lo) * (1.0 + 1e-7) + 1e-8

    def volume_ratio(self, st: TickState, base_volume: float) -> float:
        """Volume after the baseline over the average lookback-long volume of the volume window."""
        nv = self.nv
        tb = int(st[TB])
        oldest = tb - nv + 1
        while st[NFIELDS + oldest % nv] == BEFORE and oldest < tb:  # from the windows' first bucket
            oldest += 1
        start = st[NFIELDS + oldest % nv]  # the volume before the first trade from `oldest` on
        average = (st[CV] - start) / ((tb - oldest + 1) * self.bucket_ns / self.lookback_ns)
        return (st[CV] - base_volume) / average if average > 0.0 else 0.0

    def _surge(self, st: TickState, tr: Trade, r: int, out: list[Event], env: tuple[int, ...]) -> None:
        p = self._baseline(st, r)
        self._surge_filter(st)
        if p < 0:
            return
        bands, i = self.bands, p % self.scap
        base, base_volume = surge_price(st.sr, i), surge_volume(st.sr, i)
        move = tr.price - base
        band = bands.band(tr.price)
        if not passes(abs(move), base, bands.sg_pct[band], bands.sg_usd[band]):
            return
        st[SLAST] = r
        out.append(
            Surge(
                *self._envelope("surge", tr, env),
                direction="up" if move > 0 else "down",
                move_pct=move / base * 100.0,
                volume_ratio=self.volume_ratio(st, base_volume),
            )
        )
