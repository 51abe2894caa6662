"""The TICK detector's checkpoint rows: a header, one row per ticker, and the older version still read."""

from __future__ import annotations

from array import array
from typing import Any

import msgspec

from workers import tick_state
from workers.snapshot import array_of
from workers.tick_state import (
    BEFORE,
    EMPTY,
    LAST,
    MASK,
    NFIELDS,
    P3,
    PB,
    SH,
    SO,
    STRIDE,
    TB,
    TICKS,
    N,
    TickState,
    count_put,
    state,
)

VERSION = 6  # 6: one object per ticker, the trend's direction beside fewer scalars; 5: counts after the trend ring
CENTRED = 5  # read too, whole: the direction, the volume window's first bucket, P1 and P2 among the scalars
PACKED = 4  # read too, whole: the count ring after the scalars (the session's count before each bucket)
DOUBLES = 3  # read too, whole: that, and the surge ring as doubles (its wide form)
OLDER = 2  # read too: the session's scalars are kept, its trend and surge windows restart
# The scalars of versions 2 to 4, in order (version 2 had no PB), and of version 5; this version
# keeps those it names, has TDIR as the state's `tdir` and VFIRST as BEFORE marks in the volume ring
# fmt: off
OLD_SCALARS = ("WAKE", "PMAX", "PMIN", "N", "CV", "LAST", "FIRST", "HI", "LO", "RHI", "RLO", "HIT", "LOT", "HIC",
               "LOC", "TB", "TB_END", "TB0", "P1", "P2", "P3", "TUP", "TDN", "TUPF", "TDNF", "TDIR", "TLAST",
               "VFIRST", "SS_END", "SH", "SO", "SELIG", "RMIN", "RMAX", "SUP", "SDN", "SFROM", "SLAST", "WAKE2",
               "QSEQ", "PB")
V5_SCALARS = ("WAKE", "PMAX", "PMIN", "N", "CV", "LAST", "FIRST", "HI", "LO", "RHI", "RLO", "HIT", "LOT", "HIC",
              "LOC", "TB", "P1", "P2", "P3", "TUP", "TDN", "TDIR", "TLAST", "VFIRST", "SS_END", "SH", "SO",
              "SELIG", "RMIN", "RMAX", "SUP", "SDN", "SLAST", "WAKE2", "QSEQ", "PB")
# fmt: on
SCALARS = {CENTRED: V5_SCALARS, PACKED: OLD_SCALARS, DOUBLES: OLD_SCALARS, OLDER: OLD_SCALARS[:-1]}
KEPT = {name: getattr(tick_state, name) for name in V5_SCALARS if hasattr(tick_state, name)}  # -> index
Shape = tuple[int, int, int, int]  # the detector's trend ring, count window, volume ring, surge ring sizes


class TickHeader(msgspec.Struct, array_like=True, frozen=True):
    """The tick detector's own state on disk: version, window layout, session offset, ignored counts."""

    v: int
    layout: tuple[int, ...]
    offset: int
    ignored: dict[str, int]


_header = msgspec.msgpack.Decoder(TickHeader)
_row = msgspec.msgpack.Decoder(tuple[int, bytes, int, str, bytes, str, bytes])
_row_v4 = msgspec.msgpack.Decoder(tuple[int, bytes, str, bytes, str, bytes])
_row_v3 = msgspec.msgpack.Decoder(tuple[int, bytes, str, bytes, bytes])
_row_v2 = msgspec.msgpack.Decoder(tuple[int, bytes, bytes, bytes])


def header(layout: tuple[int, ...], offset: int, ignored: dict[str, int]) -> bytes:
    return msgspec.msgpack.encode(TickHeader(VERSION, layout, offset, ignored))


def row(st: TickState) -> bytes:
    """One ticker's session: day start, scalars and volume ring, trend direction, trend ring and
    surge ring (each with its typecode)."""
    tr, sr = st.tr, st.sr
    return msgspec.msgpack.encode((st.day, st.tobytes(), st.tdir, tr.typecode, tr.tobytes(), sr.typecode, sr.tobytes()))


def read_header(data: bytes) -> TickHeader:
    head = _header.decode(data)
    if head.v not in (VERSION, CENTRED, PACKED, DOUBLES, OLDER):
        raise ValueError(f"version {head.v}")
    return head


def read_row(v: int, data: bytes, shape: Shape | None) -> TickState:
    """A saved state in this version's form: a row of an older version has its scalars mapped, and
    its windows too if `shape` is given (it was written for this very layout), else it has none
    (the caller empties them)."""
    tdir = 0
    if v == VERSION:
        day, a, tdir, code, tr, scode, sr = _row.decode(data)
    elif v in (CENTRED, PACKED):
        day, a, code, tr, scode, sr = _row_v4.decode(data)
    elif v == DOUBLES:
        day, a, code, tr, sr = _row_v3.decode(data)
        scode = "d"
    else:
        day, a, tr, sr = _row_v2.decode(data)
        code, scode = "i", "d"
    if code not in EMPTY or scode not in STRIDE:
        raise ValueError(f"bad ring types {code!r}, {scode!r}")
    if v != VERSION:
        return _upgrade(v, day, array_of("d", a), array_of(code, tr), array_of(scode, sr), shape)
    if tdir not in (-1, 0, 1):
        raise ValueError(f"bad trend direction {tdir}")
    return state(day, array_of("d", a), array_of(code, tr), array_of(scode, sr), tdir)


def _upgrade(v: int, day: int, a: array[float], tr: array[Any], sr: array[Any], shape: Shape | None) -> TickState:
    """An older version's state in this version's form (see read_row). Versions 3 and 4 kept, after
    the scalars, the session's trade count before each bucket of window 1 and the current one, then
    the volume ring; the trend ring at (bucket - TB0) % cap, filled as buckets came; one more surge slot."""
    names = SCALARS[v]
    old = dict(zip(names, a[: len(names)], strict=False))
    if len(old) != len(names) or old["TDIR"] not in (-1.0, 0.0, 1.0):
        raise ValueError("bad scalars")
    head = [0.0] * NFIELDS
    for name, i in KEPT.items():
        head[i] = old.get(name, 0.0)
    tdir = int(old["TDIR"])
    if shape is None:
        return state(day, head, array("h"), array("q"), tdir)
    cap, cw, nv, scap = shape
    rest, b = a[len(names) :].tolist(), int(head[TB])
    before, rest = (rest[: cw + 1], rest[cw + 1 :]) if v != CENTRED else ([], rest)
    if len(rest) != nv or (v != CENTRED and len(tr) > cap):
        raise ValueError("bad sizes")
    first = int(old["VFIRST"])  # the first bucket of the volume window (-1: none yet)
    for x in range(b - nv + 1, first if first >= 0 else b + 1):
        rest[x % nv] = BEFORE
    st = state(day, head + rest, tr, sr, tdir)
    if v == CENTRED:
        return st
    st[N] = 0.0
    if tr:  # the current bucket's trades, and each earlier one's inside window 1
        base, empty = int(old["TB0"]), EMPTY[tr.typecode]
        st.tr = array(tr.typecode, [empty] * cap + [0] * cw)
        for x in range(max(base, b - cap + 1), b + 1):  # (a ring still filling holds base to b)
            st.tr[x % cap] = tr[(x - base) % cap]
        st[N] = old["N"] - before[b % (cw + 1)]
        for x in range(max(0, b - cw), b):
            count_put(st, cap, x % cw, int(before[(x + 1) % (cw + 1)] - before[x % (cw + 1)]))
    _fewer_slots(st, scap)
    return st


def _fewer_slots(st: TickState, scap: int) -> None:
    """The surge ring of an older version (one slot more) in `scap` slots: its newest entries."""
    sr, k = st.sr, STRIDE[st.sr.typecode]
    head = int(st[SH])
    if head <= scap:  # filled no further than this ring holds: the same positions
        st.sr = array(sr.typecode, sr[: k * scap].tolist())
        return
    if len(sr) != k * (scap + 1):
        raise ValueError("bad surge ring size")
    entries = {p % scap: sr[p % (scap + 1) * k : p % (scap + 1) * k + k] for p in range(head - scap, head)}
    st.sr = array(sr.typecode, [x for i in range(scap) for x in entries[i]])
    st[SO] = max(st[SO], head - scap)


def check(st: TickState, size: int, cap: int, cw: int, scap: int, bucket_ns: int) -> None:
    """ValueError unless a state read for this very layout fits it: sizes, the newest trend bucket
    (the last trade's, with trades: so every window's scan for its first bucket with trades ends)
    and the largest window's first (inside the ring, with trades), prices and counts."""
    tr, sr = st.tr, st.sr
    k = STRIDE[sr.typecode]
    if len(st) != size or len(tr) not in (0, cap + cw) or len(sr) % k or len(sr) > k * scap:
        raise ValueError("bad sizes")
    if st[TB] >= 0 and not st[NFIELDS + int(st[TB]) % (size - NFIELDS)] >= 0:
        raise ValueError("bad volume ring")
    if sr.typecode == "q" and any(t < 0 or w < 0 or not w & MASK for t, w in zip(sr[::2], sr[1::2], strict=True)):
        raise ValueError("bad surge ring entries")
    if not tr:
        if st[TB] >= 0:
            raise ValueError("trend buckets without a trend ring")
        return
    b, p, empty, pb = int(st[TB]), int(st[P3]), EMPTY[tr.typecode], st[PB]
    if b != st[LAST] // bucket_ns or tr[b % cap] == empty:
        raise ValueError("bad newest trend bucket")
    if not (b - cap < p <= b and p == st[P3]) or tr[p % cap] == empty:
        raise ValueError("bad first trend bucket")
    if not (0 <= pb < 0x7FFFFFFF and pb == int(pb) and (pb == 0 or tr.typecode == "h")):
        raise ValueError("bad trend ring base")
    scale = 1.0 if tr.typecode == "d" else TICKS
    if any(v != empty and not (v + pb) / scale > 0 for v in tr[:cap]):
        raise ValueError("bad trend ring prices")
    if any(not 0 <= n == int(n) for n in (*tr[cap:], st[N])):
        raise ValueError("bad trade counts")
