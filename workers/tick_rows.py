"""The TICK detector's checkpoint rows: a header, one row per ticker, and the older version still read."""

from __future__ import annotations

from array import array

import msgspec

from workers.tick_state import EMPTY, MASK, NFIELDS, P1, P2, P3, PB, STRIDE, TB, TB0, TICKS, TickState

VERSION = 4  # 4: packed surge ring; 3: compact trend ring, count and volume rings after the scalars
DOUBLES = 3  # read too, whole: the surge ring as doubles (its wide form)
OLDER = 2  # read too: the session's scalars are kept, its trend and surge windows restart


class TickHeader(msgspec.Struct, array_like=True, frozen=True):
    """The tick detector's own state on disk: version, window layout, session offset, ignored counts."""

    v: int
    layout: tuple[int, ...]
    offset: int
    ignored: dict[str, int]


_header = msgspec.msgpack.Decoder(TickHeader)
_row = msgspec.msgpack.Decoder(tuple[int, bytes, str, bytes, str, bytes])
_row_v3 = msgspec.msgpack.Decoder(tuple[int, bytes, str, bytes, bytes])
_row_v2 = msgspec.msgpack.Decoder(tuple[int, bytes, bytes, bytes])


def header(layout: tuple[int, ...], offset: int, ignored: dict[str, int]) -> bytes:
    return msgspec.msgpack.encode(TickHeader(VERSION, layout, offset, ignored))


def row(st: TickState) -> bytes:
    """One ticker's session: day start, scalars and rings, trend ring and surge ring (each with its typecode)."""
    tr, sr = st.tr, st.sr
    return msgspec.msgpack.encode((st.day, st.a.tobytes(), tr.typecode, tr.tobytes(), sr.typecode, sr.tobytes()))


def read_header(data: bytes) -> TickHeader:
    head = _header.decode(data)
    if head.v not in (VERSION, DOUBLES, OLDER):
        raise ValueError(f"version {head.v}")
    return head


def read_row(v: int, data: bytes) -> TickState:
    """A saved state as it was written (a version-2 row with empty windows: the caller resets them)."""
    if v == OLDER:
        day, a, _, _ = _row_v2.decode(data)
        st = TickState(day, array("d", a), array("i"), array("d"))
        if len(st.a) != NFIELDS - 1:  # no PB then
            raise ValueError("bad scalars")
        return st
    if v == DOUBLES:
        day, a, code, tr, sr = _row_v3.decode(data)
        scode = "d"
    else:
        day, a, code, tr, scode, sr = _row.decode(data)
    if code not in EMPTY or scode not in STRIDE:
        raise ValueError(f"bad ring types {code!r}, {scode!r}")
    return TickState(day, array("d", a), array(code, tr), array(scode, sr))


def check(st: TickState, size: int, tcap: int, scap: int) -> None:
    """ValueError unless a state read for this very layout fits it: sizes, and the window pointers
    on buckets with trades inside the ring."""
    a, tr, sr = st.a, st.tr, st.sr
    k = STRIDE[sr.typecode]
    if len(a) != size or len(tr) > tcap or len(sr) % k or len(sr) > k * scap:
        raise ValueError("bad sizes")
    if sr.typecode == "q" and any(t < 0 or w < 0 or not w & MASK for t, w in zip(sr[::2], sr[1::2], strict=True)):
        raise ValueError("bad surge ring entries")
    if not tr:
        return
    base, newest = a[TB0], a[TB]
    if not (base <= a[P3] and newest - tcap < a[P3] <= a[P2] <= a[P1] <= newest):
        raise ValueError("bad trend window pointers")
    if len(tr) < tcap and newest - base >= len(tr):
        raise ValueError("bad trend ring length")
    empty, pb = EMPTY[tr.typecode], a[PB]
    if any(tr[int(a[k] - base) % tcap] == empty for k in (P1, P2, P3, TB)):
        raise ValueError("trend window pointers on empty buckets")
    if not (0 <= pb < 0x7FFFFFFF and pb == int(pb) and (pb == 0 or tr.typecode == "h")):
        raise ValueError("bad trend ring base")
    if any(v != empty and not (v + pb) / (1.0 if tr.typecode == "d" else TICKS) > 0 for v in tr):
        raise ValueError("bad trend ring prices")
