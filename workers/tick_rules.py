"""TICK channel detector: session high/low, trend and surge per ticker (rules in docs/events.md)."""

from __future__ import annotations

import math
from array import array

import msgspec

from tickmesh.config import ChannelConfig, TickRules
from tickmesh.schema import Event, High, Low, Record, Surge, Trade, Trend, event_id

DAY_NS = 86_400 * 1_000_000_000
EPS = 1e-9  # within EPS of a threshold counts as on it: decimal prices meet binary floats
INF = math.inf
NEVER = -1e18  # the time of "no event yet": every cooldown has passed
# A trend ring key is bucket * 2**36 + the session's trade count before the bucket: exact in a
# float for buckets < 2**17 (a day of 1 s buckets) and < 2**36 trades per ticker and session.
KEY_UNIT = float(1 << 36)
CUM_MASK = (1 << 36) - 1
SNAPSHOT_VERSION = 1
# A ticker's scalars live in one float array (one allocation, contiguous, nothing boxed); times
# in it are ns since the session start, exact in a float. While a trade is before WAKE and
# strictly inside (PMIN, PMAX) no rule can fire and no window moves: the hot path only counts it.
# fmt: off
(WAKE, PMAX, PMIN, N, CV,
 LAST, FIRST, HI, LO, RHI, RLO, HIT, LOT, HIC, LOC,
 TB, TB_END, TH, P1, P2, P3, TUP, TDN, TUPF, TDNF, TDIR, TLAST, VFIRST,
 SS_END, SH, SO, SELIG, RMIN, RMAX, SUP, SDN, SFROM, SLAST, WAKE2, NFIELDS) = range(40)
# fmt: on


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


class TickState:
    """One ticker's session: its day start, scalars, trend ring, surge ring.

    `a` holds the scalars (indexes above); `tr` holds (bucket key, first price, cumulative volume
    before it) for each trend bucket with trades; `sr` holds (time, price, cumulative volume
    after it) of the first trade of each surge slot.
    """

    __slots__ = ("day", "a", "tr", "sr")

    def __init__(self, day: int, a: array[float], tr: array[float], sr: array[float]) -> None:
        self.day, self.a, self.tr, self.sr = day, a, tr, sr


def new_state(day: int, r: int, price: float) -> TickState:
    """The state of a ticker's first trade of a session (at r ns after `day`)."""
    a = array("d", bytes(8 * NFIELDS))
    a[LAST] = a[FIRST] = r
    a[HI] = a[LO] = a[RHI] = a[RLO] = price
    a[HIT] = a[LOT] = a[TLAST] = a[SLAST] = NEVER
    st = TickState(day, a, array("d"), array("d"))
    reset_windows(st)
    return st


def reset_windows(st: TickState) -> None:
    """Empty the trend, volume and surge windows (a new session, or their layout changed)."""
    a = st.a
    st.tr, st.sr = array("d"), array("d")
    a[WAKE] = a[WAKE2] = a[TB_END] = a[SS_END] = a[TUPF] = a[TDNF] = a[SFROM] = NEVER
    a[PMAX], a[PMIN] = -INF, INF
    a[TB] = a[VFIRST] = -1
    a[TH] = a[P1] = a[P2] = a[P3] = a[SH] = a[SO] = 0.0
    a[TUP] = a[SUP] = a[SELIG] = a[RMIN] = INF
    a[TDN] = a[SDN] = a[RMAX] = -INF


class TickDetector:
    """Session high/low, trend and surge on trades (rules in docs/events.md)."""

    source = "tick"

    def __init__(self, channel: ChannelConfig) -> None:
        self.states: dict[str, TickState] = {}
        self.ignored: dict[str, int] = {"previous_session": 0}
        self.layout: tuple[int, ...] = ()
        self.offset_ns = -1
        self.configure(channel)

    # -- configuration ---------------------------------------------------------------
    def configure(self, channel: ChannelConfig) -> None:
        """New rules and priority; state is kept (windows restart if their layout changed, every
        session restarts if session_start_s changed)."""
        rules: TickRules = channel.rules  # type: ignore[attr-defined]
        self.rules, self.priority, self.bands = rules, channel.priority, Bands(rules)
        self.enabled, self.surge_on = rules.enabled, rules.surge_enabled
        if rules.session_start_s * 1_000_000_000 != self.offset_ns:
            self.offset_ns, self.states = rules.session_start_s * 1_000_000_000, {}
        self.cooldown_ns = round(rules.cooldown_s * 1e9)
        g = rules.trend_bucket_s
        self.bucket_ns = g * 1_000_000_000
        self.spans = (rules.trend_window1_s // g, rules.trend_window2_s // g, rules.trend_window3_s // g)
        self.weights = (rules.trend_weight1, rules.trend_weight2, rules.trend_weight3)
        self.history_ns = round(rules.trend_min_history_s * 1e9)
        self.interval_ns = round(rules.trend_interval_s * 1e9)
        self.nv = max(1, math.ceil(rules.surge_volume_window_s / g - 1e-9))
        self.tcap = max(self.spans[2], self.nv) + 1
        self.lookback_ns = max(1, round(rules.surge_lookback_s * 1e9))
        self.slot_ns = rules.surge_resolution_ms * 1_000_000
        self.scap = -(-self.lookback_ns // self.slot_ns) + 3
        self.surge_cd_ns = round(rules.surge_cooldown_s * 1e9)
        layout = (self.bucket_ns, self.tcap, *self.spans, self.nv, self.lookback_ns, self.slot_ns)
        relayout, self.layout = layout != self.layout and bool(self.layout), layout
        for st in self.states.values():
            if relayout:
                reset_windows(st)
                st.a[FIRST] = st.a[LAST]  # the trend's history restarts with its windows
            self._refresh(st)

    def _refresh(self, st: TickState) -> None:
        """Recompute a state's cached filters and gates after a rule change or a restore."""
        a = st.a
        if a[TH] > 0:
            self._trend_filter(st)
        self._trend_gates(a)
        self._surge_filter(st)
        a[SFROM] = a[SLAST] + self.surge_cd_ns
        self._rearm(a, a[LAST])

    # -- the hot path ------------------------------------------------------------------
    def process(self, record: Record, record_seq: int, ingest_ns: int, detected_ns: int) -> list[Event]:
        if type(record) is not Trade or not self.enabled:
            return []
        st = self.states.get(record.ticker)
        if st is None:
            return self._locate(None, record, record_seq, ingest_ns, detected_ns)
        r = record.timestamp - st.day
        a = st.a
        price = record.price
        if r >= a[0] or price > a[1] or price < a[2] or r < 0:  # WAKE, PMAX, PMIN, an older session
            return self._slow(st, record, r, record_seq, ingest_ns, detected_ns)
        a[3] += 1.0  # N
        a[4] += record.size  # CV
        return []

    def _locate(self, st: TickState | None, tr: Trade, *env: int) -> list[Event]:
        """A new ticker, a new session, or a trade of a session already over."""
        t = tr.timestamp
        day = (t - self.offset_ns) // DAY_NS * DAY_NS + self.offset_ns
        if st is not None and st.day > day:
            self.ignored["previous_session"] += 1
            return []
        if st is None or st.day < day:
            st = self.states[tr.ticker] = new_state(day, t - day, tr.price)
            self._trend_gates(st.a)
        return self._slow(st, tr, t - day, *env)

    def _slow(self, st: TickState, tr: Trade, r: int, *env: int) -> list[Event]:
        """Every rule, in order, for a trade that may fire one or move a window."""
        if r < 0 or r >= DAY_NS:
            return self._locate(st, tr, *env)
        a, price = st.a, tr.price
        if a[LAST] <= r < a[WAKE2] and a[PMIN] < price < a[PMAX]:
            self._next_slot(st, tr, r)  # only a slot ends: the most common reason to be here
            return []
        if r < a[LAST]:
            r = int(a[LAST])  # a late trade never moves a window back
        a[LAST] = r
        events: list[Event] = []
        if price > a[HI]:
            a[HI] = price
            if r - a[HIT] >= self.cooldown_ns and self.rules.high_low_enabled:
                self._high(a, tr, r, events, env)
        elif price < a[LO]:
            a[LO] = price
            if r - a[LOT] >= self.cooldown_ns and self.rules.high_low_enabled:
                self._low(a, tr, r, events, env)
        if r >= a[TB_END]:
            self._roll(st, r, price)
        a[N] += 1.0
        a[CV] += tr.size
        if r >= a[SS_END]:
            self._slot(st, r, price)
        if price >= a[TUP]:
            if r >= a[TUPF]:
                self._trend(st, tr, r, events, env)
        elif price <= a[TDN] and r >= a[TDNF]:
            self._trend(st, tr, r, events, env)
        if (price >= a[SUP] or price <= a[SDN]) and r >= a[SFROM]:
            self._surge(st, tr, r, events, env)
        self._rearm(a, r)
        return events

    @staticmethod
    def _rearm(a: array[float], r: float) -> None:
        """The next time and the price range beyond which a trade needs the slow path."""
        wake, pmax, pmin = a[TB_END], a[HI], a[LO]
        if wake > DAY_NS:
            wake = DAY_NS
        gate = a[TUPF]
        if r < gate:
            wake = gate if gate < wake else wake
        elif a[TUP] < pmax:
            pmax = a[TUP]
        gate = a[TDNF]
        if r < gate:
            wake = gate if gate < wake else wake
        elif a[TDN] > pmin:
            pmin = a[TDN]
        gate = a[SFROM] if a[SFROM] > a[SELIG] else a[SELIG]
        if r < gate:
            wake = gate if gate < wake else wake
        else:
            pmax = a[SUP] if a[SUP] < pmax else pmax
            pmin = a[SDN] if a[SDN] > pmin else pmin
        a[WAKE2], a[PMAX], a[PMIN] = wake, pmax, pmin
        a[WAKE] = a[SS_END] if a[SS_END] < wake else wake

    def _event_id(self, kind: str, tr: Trade) -> str:
        return event_id("tick", kind, tr.ticker, cause_of(tr))

    # -- high / low ------------------------------------------------------------------------
    def _high(self, a: array[float], tr: Trade, r: int, out: list[Event], env: tuple[int, ...]) -> None:
        ref, bands = a[RHI], self.bands
        i = bands.band(tr.price)
        if passes(tr.price - ref, ref, bands.hl_pct[i], bands.hl_usd[i]):
            a[RHI], a[HIT], a[HIC] = tr.price, r, a[HIC] + 1
            out.append(
                High(
                    self._event_id("high", tr),
                    tr.ticker,
                    "tick",
                    self.priority,
                    tr.timestamp,
                    tr.price,
                    env[0],
                    env[1],
                    env[2],
                    previous=ref,
                    count=int(a[HIC]),
                )
            )

    def _low(self, a: array[float], tr: Trade, r: int, out: list[Event], env: tuple[int, ...]) -> None:
        ref, bands = a[RLO], self.bands
        i = bands.band(tr.price)
        if passes(ref - tr.price, ref, bands.hl_pct[i], bands.hl_usd[i]):
            a[RLO], a[LOT], a[LOC] = tr.price, r, a[LOC] + 1
            out.append(
                Low(
                    self._event_id("low", tr),
                    tr.ticker,
                    "tick",
                    self.priority,
                    tr.timestamp,
                    tr.price,
                    env[0],
                    env[1],
                    env[2],
                    previous=ref,
                    count=int(a[LOC]),
                )
            )

    # -- trend -------------------------------------------------------------------------------
    def _roll(self, st: TickState, r: int, price: float) -> None:
        """A trade in a new bucket: move the window pointers, append the bucket, refresh the filter."""
        a, tr, cap = st.a, st.tr, self.tcap
        b = r // self.bucket_ns
        a[TB_END], a[TB] = (b + 1) * self.bucket_ns, b
        if a[VFIRST] < 0:
            a[VFIRST] = b
        th = int(a[TH])
        s1, s2, s3 = self.spans
        p, bound = int(a[P1]), (b - s1) * KEY_UNIT
        while p < th and tr[p % cap * 3] < bound:
            p += 1
        a[P1], p, bound = p, int(a[P2]), (b - s2) * KEY_UNIT
        while p < th and tr[p % cap * 3] < bound:
            p += 1
        a[P2], p, bound = p, int(a[P3]), (b - s3) * KEY_UNIT
        while p < th and tr[p % cap * 3] < bound:
            p += 1
        a[P3] = p
        i = th % cap * 3
        if i == len(tr):
            tr.extend((b * KEY_UNIT + a[N], price, a[CV]))
        else:
            tr[i], tr[i + 1], tr[i + 2] = b * KEY_UNIT + a[N], price, a[CV]
        a[TH] = th + 1
        self._trend_filter(st)

    def _oldest(self, st: TickState) -> tuple[float, float, float]:
        """The oldest price inside each trend window."""
        a, tr, cap = st.a, st.tr, self.tcap
        return tr[int(a[P1]) % cap * 3 + 1], tr[int(a[P2]) % cap * 3 + 1], tr[int(a[P3]) % cap * 3 + 1]

    def _trend_filter(self, st: TickState) -> None:
        """Prices beyond which the score may pass the threshold (the score is linear in the price)."""
        (q1, q2, q3), (w1, w2, w3) = self._oldest(st), self.weights
        k = 100.0 * (w1 / q1 + w2 / q2 + w3 / q3)
        c = 100.0 * (w1 + w2 + w3)
        thr, a = self.rules.trend_threshold, st.a
        if not self.rules.trend_enabled or k <= 0.0:
            a[TUP], a[TDN] = INF, -INF
        else:  # generous margins: the exact score decides in _trend
            a[TUP] = (c + thr) / k * (1.0 - 1e-7) - 1e-8
            a[TDN] = (c - thr) / k * (1.0 + 1e-7) + 1e-8

    def _trend_gates(self, a: array[float]) -> None:
        """Earliest times an up / down trend may fire: history, and the interval unless it flips."""
        start = a[FIRST] + self.history_ns
        again = max(start, a[TLAST] + self.interval_ns)
        a[TUPF] = again if a[TDIR] == 1 else start
        a[TDNF] = again if a[TDIR] == -1 else start

    def score(self, st: TickState, price: float) -> float:
        """The weighted score at `price` (0.3 w180 + 0.4 w360 + 0.3 w600 by default; 1 % = 1.0)."""
        (q1, q2, q3), (w1, w2, w3) = self._oldest(st), self.weights
        return w1 * ((price - q1) / q1 * 100.0) + w2 * ((price - q2) / q2 * 100.0) + w3 * ((price - q3) / q3 * 100.0)

    def _trend(self, st: TickState, tr: Trade, r: int, out: list[Event], env: tuple[int, ...]) -> None:
        a, rules = st.a, self.rules
        in_window = a[N] - (int(st.tr[int(a[P1]) % self.tcap * 3]) & CUM_MASK)  # the smallest window
        if in_window < rules.trend_min_trades:
            return
        score = self.score(st, tr.price)
        if abs(score) < rules.trend_threshold - EPS or score == 0.0:
            return
        up = score > 0.0
        if r < (a[TUPF] if up else a[TDNF]):
            return
        a[TDIR], a[TLAST] = (1 if up else -1), r
        self._trend_gates(a)
        strength = "strong" if abs(score) >= rules.trend_strong - EPS else "moderate"
        out.append(
            Trend(
                self._event_id("trend", tr),
                tr.ticker,
                "tick",
                self.priority,
                tr.timestamp,
                tr.price,
                env[0],
                env[1],
                env[2],
                direction="up" if up else "down",
                score=score,
                strength=strength,
            )
        )

    # -- surge ----------------------------------------------------------------------------------
    def _next_slot(self, st: TickState, tr: Trade, r: int) -> None:
        """A trade that only starts a slot: count it, append it, narrow the filter to cover it."""
        a = st.a
        a[LAST] = r
        a[N] += 1.0
        a[CV] += tr.size
        self._slot(st, r, tr.price)
        gate = a[SFROM] if a[SFROM] > a[SELIG] else a[SELIG]
        if r >= gate:
            if a[SUP] < a[PMAX]:
                a[PMAX] = a[SUP]
            if a[SDN] > a[PMIN]:
                a[PMIN] = a[SDN]
        elif gate < a[WAKE2]:
            a[WAKE2] = gate
        a[WAKE] = a[SS_END] if a[SS_END] < a[WAKE2] else a[WAKE2]

    def _slot(self, st: TickState, r: int, price: float) -> None:
        """The first trade of a slot joins the ring; the filter widens to cover it."""
        a, sr, cap = st.a, st.sr, self.scap
        head = int(a[SH])
        i = head % cap * 3
        if i == len(sr):
            sr.extend((r, price, a[CV]))
        else:
            sr[i], sr[i + 1], sr[i + 2] = r, price, a[CV]
            if head - a[SO] >= cap:  # full: the oldest is older than any baseline from now on
                a[SO] = head - cap + 1
        a[SH] = head + 1
        if head == 0:
            a[SELIG] = r + self.lookback_ns  # no baseline before this
        a[SS_END] = (r // self.slot_ns + 1) * self.slot_ns
        if price < a[RMIN]:
            a[RMIN] = price
            a[SUP] = self._surge_up(price) if self.surge_on else INF
        if price > a[RMAX]:
            a[RMAX] = price
            a[SDN] = self._surge_down(price) if self.surge_on else -INF

    def _baseline(self, st: TickState, r: int) -> int:
        """The ring position of the baseline at `r` (the newest entry at least the lookback older),
        or -1; older entries are dropped, as no later trade can need them."""
        a, sr, cap = st.a, st.sr, self.scap
        cutoff, p, head = r - self.lookback_ns, int(a[SO]), int(a[SH])
        while p + 1 < head and sr[(p + 1) % cap * 3] <= cutoff:
            p += 1
        a[SO] = p
        return p if p < head and sr[p % cap * 3] <= cutoff else -1

    def _surge_filter(self, st: TickState) -> None:
        """Prices beyond which a move may pass the gate from some ring entry (the baseline is one
        of them until the next check). The bounds grow with the base price, so the lowest and
        highest entries decide."""
        a, sr, cap = st.a, st.sr, self.scap
        prices = [sr[p % cap * 3 + 1] for p in range(int(a[SO]), int(a[SH]))]
        a[RMIN], a[RMAX] = (min(prices), max(prices)) if prices else (INF, -INF)
        on = self.surge_on and prices
        a[SUP] = self._surge_up(a[RMIN]) if on else INF
        a[SDN] = self._surge_down(a[RMAX]) if on else -INF

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
        a, tr, cap = st.a, st.tr, self.tcap
        oldest = max(int(a[TB]) - self.nv + 1, int(a[VFIRST]))
        p, bound, start = int(a[TH]) - 1, oldest * KEY_UNIT, a[CV]
        while p >= 0 and tr[p % cap * 3] >= bound:  # the first bucket with trades from `oldest` on
            start, p = tr[p % cap * 3 + 2], p - 1
        average = (a[CV] - start) / ((a[TB] - oldest + 1) * self.bucket_ns / self.lookback_ns)
        return (a[CV] - base_volume) / average if average > 0.0 else 0.0

    def _surge(self, st: TickState, tr: Trade, r: int, out: list[Event], env: tuple[int, ...]) -> None:
        p = self._baseline(st, r)
        self._surge_filter(st)
        if p < 0:
            return
        a, bands, i = st.a, self.bands, p % self.scap * 3
        base, base_volume = st.sr[i + 1], st.sr[i + 2]
        move = tr.price - base
        band = bands.band(tr.price)
        if not passes(abs(move), base, bands.sg_pct[band], bands.sg_usd[band]):
            return
        a[SLAST], a[SFROM] = r, r + self.surge_cd_ns
        out.append(
            Surge(
                self._event_id("surge", tr),
                tr.ticker,
                "tick",
                self.priority,
                tr.timestamp,
                tr.price,
                env[0],
                env[1],
                env[2],
                direction="up" if move > 0 else "down",
                move_pct=move / base * 100.0,
                volume_ratio=self.volume_ratio(st, base_volume),
            )
        )

    # -- crash recovery ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Every ticker's state (arrays as raw bytes) with the window layout it was built for."""
        states = {k: (s.day, s.a.tobytes(), s.tr.tobytes(), s.sr.tobytes()) for k, s in self.states.items()}
        return msgspec.msgpack.encode(TickSnapshot(SNAPSHOT_VERSION, self.layout, self.offset_ns, self.ignored, states))

    def restore(self, data: bytes) -> None:
        """Replace every state by a snapshot's (windows built for another layout start empty).
        Raises ValueError, changing nothing, for anything but a snapshot of this version."""
        try:
            snap = msgspec.msgpack.decode(data, type=TickSnapshot)
            if snap.v != SNAPSHOT_VERSION:
                raise ValueError(f"version {snap.v}")
            same = tuple(snap.layout) == self.layout
            states = {}
            for ticker, (day, a, tr, sr) in snap.states.items():
                st = states[ticker] = TickState(day, array("d", a), array("d", tr), array("d", sr))
                if len(st.a) != NFIELDS or len(st.tr) % 3 or len(st.sr) % 3:
                    raise ValueError(f"bad state for {ticker}")
                if same and (len(st.tr) > 3 * self.tcap or len(st.sr) > 3 * self.scap):
                    raise ValueError(f"bad windows for {ticker}")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"not a tick detector snapshot of version {SNAPSHOT_VERSION}: {exc}") from None
        if snap.offset != self.offset_ns:
            states = {}  # sessions of another session_start_s: start afresh, as configure does
        for st in states.values():
            if not same:
                reset_windows(st)
                st.a[FIRST] = st.a[LAST]
            self._refresh(st)
        self.states, self.ignored = states, dict(snap.ignored)


class TickSnapshot(msgspec.Struct, array_like=True, frozen=True):
    """The tick detector's state on disk: per ticker (day start, scalars, trend ring, surge ring)."""

    v: int
    layout: tuple[int, ...]
    offset: int
    ignored: dict[str, int]
    states: dict[str, tuple[int, bytes, bytes, bytes]]
