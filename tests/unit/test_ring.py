"""The aggregator's replay ring answers `since` and `last`, says when it is incomplete, and bounds reply bytes."""

from __future__ import annotations

from aggregator.ring import ReplayRing
from tickmesh.schema import High, Publication, ReplayRequest, encoder, replay_reply_decoder

T0 = 1_700_000_000_000_000_000


def pub(seq: int) -> bytes:
    event = High(f"e{seq}", "A", "tick", 1, T0, 1.0, seq, T0, T0)
    return encoder.encode(Publication(seq, 9, T0, event))


def ring_of(seqs: range, size: int, max_bytes: int = 1 << 20) -> ReplayRing:
    ring = ReplayRing(9, size, max_bytes)
    for seq in seqs:
        ring.append(seq, pub(seq))
    return ring


def ask(ring: ReplayRing, request: ReplayRequest) -> tuple[list[int], bool, bool]:
    """(seqs, complete, more) of the reply, decoded as a subscriber decodes it."""
    reply = replay_reply_decoder.decode(encoder.encode(ring.answer(request)))
    assert reply.epoch == 9
    return [p.seq for p in reply.publications], reply.complete, reply.more


def test_since_and_last() -> None:
    ring = ring_of(range(1, 9), 5)  # holds 4..8
    assert ask(ring, ReplayRequest(since=5)) == ([6, 7, 8], True, False)
    assert ask(ring, ReplayRequest(since=1)) == ([4, 5, 6, 7, 8], False, False)
    assert ask(ring, ReplayRequest(last=2))[0] == [7, 8]
    assert not ask(ring, ReplayRequest(last=50))[1]


def test_a_young_ring_is_complete() -> None:
    ring = ring_of(range(1, 2), 10)
    assert ask(ring, ReplayRequest(last=5))[1]
    assert ask(ring, ReplayRequest(since=0))[1]


def test_a_reply_stops_at_the_byte_bound_and_says_more() -> None:
    one = len(pub(50))  # seqs 10..99 encode to the same size
    ring = ring_of(range(10, 100), 100, max_bytes=10 * one)
    seqs, complete, more = ask(ring, ReplayRequest(since=9))
    assert seqs == list(range(10, 20)) and complete and more
    assert ask(ring, ReplayRequest(since=95)) == ([96, 97, 98, 99], True, False)
    seqs, _, more = ask(ring, ReplayRequest(last=30))
    assert seqs == list(range(70, 80)) and more  # the oldest of what was asked first; go on with since=79
    tiny = ring_of(range(10, 13), 10, max_bytes=one - 1)
    assert ask(tiny, ReplayRequest(since=9)) == ([10], True, True)  # at least one, whatever the bound


def test_every_reply_says_where_the_epochs_before_ended() -> None:
    """All of them, newest first; `previous_*` (for subscribers from before `ended`) the newest that published."""
    ring = ReplayRing(9, 5, 1 << 20, ended=[(8, 0), (7, 412), (3, 5)])
    ring.append(1, pub(1))
    for request in (ReplayRequest(since=0), ReplayRequest(last=3), ReplayRequest()):
        reply = replay_reply_decoder.decode(encoder.encode(ring.answer(request)))
        assert reply.ended == [(8, 0), (7, 412), (3, 5)]
        assert (reply.previous_epoch, reply.previous_seq) == (7, 412)
    first = replay_reply_decoder.decode(encoder.encode(ring_of(range(1, 3), 5).answer(ReplayRequest(since=0))))
    assert (first.ended, first.previous_epoch) == ([], 0)
