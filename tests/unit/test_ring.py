"""The aggregator's replay ring answers `since` and `last` and says when it is incomplete."""

from __future__ import annotations

from aggregator.ring import ReplayRing
from tickmesh.schema import High, Publication, ReplayRequest


def pub(seq: int) -> Publication:
    event = High(
        id=f"e{seq}",
        ticker="A",
        source="tick",
        priority=1,
        time=1,
        price=1.0,
        record_seq=seq,
        ingest_ns=1,
        detected_ns=1,
    )
    return Publication(seq, 9, 1, event)


def test_since_and_last() -> None:
    ring = ReplayRing(9, 5)
    for seq in range(1, 9):
        ring.append(pub(seq))  # holds 4..8
    reply = ring.answer(ReplayRequest(since=5))
    assert [p.seq for p in reply.publications] == [6, 7, 8] and reply.complete and reply.epoch == 9
    reply = ring.answer(ReplayRequest(since=1))
    assert [p.seq for p in reply.publications] == [4, 5, 6, 7, 8] and not reply.complete
    assert [p.seq for p in ring.answer(ReplayRequest(last=2)).publications] == [7, 8]
    assert not ring.answer(ReplayRequest(last=50)).complete


def test_a_young_ring_is_complete() -> None:
    ring = ReplayRing(1, 10)
    ring.append(pub(1))
    assert ring.answer(ReplayRequest(last=5)).complete
    assert ring.answer(ReplayRequest(since=0)).complete
