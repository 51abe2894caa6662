"""TICK channel detector: session high/low, trend and surge per ticker (rules in docs/events.md)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from tickmesh.config import ChannelConfig, TickRules
from tickmesh.schema import Event, High, Low, Record, Trade, check_ticker
from workers import snapshot, tick_rows
from workers.tick_state import (
    CV,
    DAY_NS,
    HI,
    HIC,
    HIT,
    LAST,
    LO,
    LOC,
    LOT,
    NFIELDS,
    PMAX,
    PMIN,
    QSEQ,
    RHI,
    RLO,
    SDN,
    SLAST,
    SS_END,
    SUP,
    TB,
    TDN,
    TUP,
    WAKE,
    WAKE2,
    Bands,
    N,
    TickState,
    new_state,
    passes,
    reset_windows,
)
from workers.tick_windows import SurgeWindows, TrendWindows


class TickDetector(TrendWindows, SurgeWindows):
    """Session high/low, trend and surge on trades (rules in docs/events.md); the trend and surge
    windows are the mixins of workers/tick_windows.py, the state layout is workers/tick_state.py."""

    source = "tick"

    def __init__(self, channel: ChannelConfig) -> None:
        self.states: dict[str, TickState] = {}
        self.ignored: dict[str, int] = {"previous_session": 0, "duplicate_sequence": 0}
        self.dirty: set[str] = set()  # tickers touched since the last checkpoint
        self.cleared = False  # every session restarted since the last checkpoint
        self.layout: tuple[int, ...] = ()
        self.offset_ns = -1
        self.day = -1  # the last session day seen (see _day)
        self.configure(channel)

    # -- configuration ---------------------------------------------------------------
    def configure(self, channel: ChannelConfig) -> None:
        """New rules and priority; state is kept (windows restart if their layout changed, every
        session restarts if session_start_s changed)."""
        rules: TickRules = channel.rules  # type: ignore[attr-defined]
        self.rules, self.priority, self.bands = rules, channel.priority, Bands(rules)
        self.enabled, self.surge_on = rules.enabled, rules.surge_enabled
        if rules.session_start_s * 1_000_000_000 != self.offset_ns:
            self.offset_ns, self.states, self.cleared = rules.session_start_s * 1_000_000_000, {}, True
        self.cooldown_ns = round(rules.cooldown_s * 1e9)
        g = rules.trend_bucket_s
        self.bucket_ns = g * 1_000_000_000
        self.spans = (rules.trend_window1_s // g, rules.trend_window2_s // g, rules.trend_window3_s // g)
        self.weights = (rules.trend_weight1, rules.trend_weight2, rules.trend_weight3)
        self.history_ns = round(rules.trend_min_history_s * 1e9)
        self.interval_ns = round(rules.trend_interval_s * 1e9)
        self.nv = max(1, math.ceil(rules.surge_volume_window_s / g - 1e-9))
        self.tcap = self.spans[2] + 1
        self.cw = self.spans[0]
        self.size = NFIELDS + self.nv
        self.lookback_ns = max(1, round(rules.surge_lookback_s * 1e9))
        self.slot_ns = rules.surge_resolution_ms * 1_000_000
        self.scap = -(-self.lookback_ns // self.slot_ns) + 2  # the slots a lookback meets, and the baseline's
        self.surge_cd_ns = round(rules.surge_cooldown_s * 1e9)
        layout = (self.bucket_ns, self.tcap, *self.spans, self.nv, self.lookback_ns, self.slot_ns)
        relayout, self.layout = layout != self.layout and bool(self.layout), layout
        if relayout:
            self.states = {ticker: reset_windows(st, self.size) for ticker, st in self.states.items()}
        for st in self.states.values():
            self._refresh(st)
        if relayout:
            self.dirty.update(self.states)

    def _refresh(self, st: TickState) -> None:
        """Recompute a state's cached filters and gates after a rule change or a restore."""
        if st[TB] >= 0:
            self._trend_filter(st)
        self._surge_filter(st)
        self._rearm(st, st[LAST])

    # -- the hot path ------------------------------------------------------------------
    def process(self, record: Record, record_seq: int, ingest_ns: int, detected_ns: int) -> list[Event]:
        if type(record) is not Trade or not self.enabled:
            return []
        ticker = record.ticker
        if ticker not in self.dirty:  # its first trade since the last checkpoint
            self.dirty.add(check_ticker(ticker))  # the process's one string of it, not this record's
        st = self.states.get(ticker)
        if st is None:
            return self._locate(None, record, record_seq, ingest_ns, detected_ns)
        r = record.timestamp - st.day
        q = record.sequence
        if q is not None and 0 <= r < DAY_NS:  # idempotent replays: a source sequence applies once
            if q <= st[QSEQ]:
                self.ignored["duplicate_sequence"] += 1
                return []
            st[QSEQ] = q
        price = record.price
        if r >= st[0] or price > st[1] or price < st[2] or r < 0:  # WAKE, PMAX, PMIN, an older session
            return self._slow(st, record, r, record_seq, ingest_ns, detected_ns)
        st[3] += 1.0  # N
        st[4] += record.size  # CV
        return []

    def _locate(self, st: TickState | None, tr: Trade, *env: int) -> list[Event]:
        """A new ticker, a new session, or a trade of a session already over."""
        t = tr.timestamp
        day = (t - self.offset_ns) // DAY_NS * DAY_NS + self.offset_ns
        if st is not None and st.day > day:
            self.ignored["previous_session"] += 1
            return []
        if st is None or st.day < day:
            st = self.states[check_ticker(tr.ticker)] = new_state(self._day(day), t - day, tr.price, self.size)
            if tr.sequence is not None:
                st[QSEQ] = tr.sequence
        return self._slow(st, tr, t - day, *env)

    def _day(self, day: int) -> int:
        """The same int object for the same session day (one per ticker would cost 32 bytes each)."""
        if day != self.day:
            self.day = day
        return self.day

    def _slow(self, st: TickState, tr: Trade, r: int, *env: int) -> list[Event]:
        """Every rule, in order, for a trade that may fire one or move a window."""
        if r < 0 or r >= DAY_NS:
            return self._locate(st, tr, *env)
        price = tr.price
        if st[LAST] <= r < st[WAKE2] and st[PMIN] < price < st[PMAX]:
            self._next_slot(st, tr, r)  # only a slot ends: the most common reason to be here
            return []
        if r < st[LAST]:
            r = int(st[LAST])  # a late trade never moves a window back
        st[LAST] = r
        events: list[Event] = []
        if price > st[HI]:
            st[HI] = price
            if r - st[HIT] >= self.cooldown_ns and self.rules.high_low_enabled:
                self._high(st, tr, r, events, env)
        elif price < st[LO]:
            st[LO] = price
            if r - st[LOT] >= self.cooldown_ns and self.rules.high_low_enabled:
                self._low(st, tr, r, events, env)
        if r >= (st[TB] + 1.0) * self.bucket_ns:
            self._roll(st, r, price)
        st[N] += 1.0
        st[CV] += tr.size
        if r >= st[SS_END]:
            self._slot(st, r, price)
        if price >= st[TUP] or price <= st[TDN]:
            up, down = self.trend_gates(st)
            if r >= (up if price >= st[TUP] else down):
                self._trend(st, tr, r, events, env)
        if (price >= st[SUP] or price <= st[SDN]) and r >= st[SLAST] + self.surge_cd_ns:
            self._surge(st, tr, r, events, env)
        self._rearm(st, r)
        return events

    def _rearm(self, st: TickState, r: float) -> None:
        """The next time and the price range beyond which a trade needs the slow path."""
        wake, pmax, pmin = (st[TB] + 1.0) * self.bucket_ns, st[HI], st[LO]  # the end of bucket TB
        if wake > DAY_NS:
            wake = DAY_NS
        up, down = self.trend_gates(st)
        if r < up:
            wake = up if up < wake else wake
        elif st[TUP] < pmax:
            pmax = st[TUP]
        if r < down:
            wake = down if down < wake else wake
        elif st[TDN] > pmin:
            pmin = st[TDN]
        gate = self.surge_gate(st)
        if r < gate:
            wake = gate if gate < wake else wake
        else:
            pmax = st[SUP] if st[SUP] < pmax else pmax
            pmin = st[SDN] if st[SDN] > pmin else pmin
        st[WAKE2], st[PMAX], st[PMIN] = wake, pmax, pmin
        st[WAKE] = st[SS_END] if st[SS_END] < wake else wake

    # -- high / low ------------------------------------------------------------------------
    def _high(self, st: TickState, tr: Trade, r: int, out: list[Event], env: tuple[int, ...]) -> None:
        ref, bands = st[RHI], self.bands
        i = bands.band(tr.price)
        if passes(tr.price - ref, ref, bands.hl_pct[i], bands.hl_usd[i]):
            st[RHI], st[HIT], st[HIC] = tr.price, r, st[HIC] + 1
            out.append(
                High(
                    *self._envelope("high", tr, env),
                    previous=ref,
                    count=int(st[HIC]),
                )
            )

    def _low(self, st: TickState, tr: Trade, r: int, out: list[Event], env: tuple[int, ...]) -> None:
        ref, bands = st[RLO], self.bands
        i = bands.band(tr.price)
        if passes(ref - tr.price, ref, bands.hl_pct[i], bands.hl_usd[i]):
            st[RLO], st[LOT], st[LOC] = tr.price, r, st[LOC] + 1
            out.append(
                Low(
                    *self._envelope("low", tr, env),
                    previous=ref,
                    count=int(st[LOC]),
                )
            )

    # -- checkpoints (workers/snapshot.py) ------------------------------------------------------
    def tickers(self) -> list[str]:
        return list(self.states)

    def header(self) -> bytes:
        return tick_rows.header(self.layout, self.offset_ns, self.ignored)

    def row(self, ticker: str) -> bytes | None:
        s = self.states.get(ticker)
        return None if s is None else tick_rows.row(s)

    def snapshot(self) -> bytes:
        return snapshot.snapshot(self)

    def restore(self, data: bytes) -> None:
        snapshot.restore(self, data, "tick")

    def restore_rows(self, header: bytes, rows: Iterable[tuple[str, bytes]]) -> None:
        """Replace every state by the saved ones (windows built for another layout or by the older
        version start empty). Raises ValueError, changing nothing, for anything else."""
        try:
            head = tick_rows.read_header(header)
            same = head.v != tick_rows.OLDER and tuple(head.layout) == self.layout
            shape = (self.tcap, self.cw, self.nv, self.scap) if same else None
            states = {}
            for ticker, row in rows:
                st = states[check_ticker(ticker)] = tick_rows.read_row(head.v, row, shape)
                if same:
                    tick_rows.check(st, self.size, self.tcap, self.cw, self.scap, self.bucket_ns)
        except Exception as exc:  # the decode boundary: whatever is wrong, nothing changes
            raise ValueError(f"not a tick detector snapshot of version {tick_rows.VERSION}: {exc}") from None
        if head.offset != self.offset_ns:
            states = {}  # sessions of another session_start_s: start afresh, as configure does
        if not same:
            states = {ticker: reset_windows(st, self.size) for ticker, st in states.items()}
        for st in states.values():
            st.day = self._day(st.day)
            self._refresh(st)
        self.states, self.ignored = states, {**self.ignored, **head.ignored}
        # rows of an older version are all written again at the next checkpoint: the header will
        # say this version, and a store must not keep rows it no longer describes
        self.dirty, self.cleared = set() if head.v == tick_rows.VERSION else set(states), False
