"""The replay ring: the most recent publications, for late joiners and subscribers that saw a gap."""

from __future__ import annotations

from collections import deque

import msgspec

from tickmesh.schema import ReplayReply, ReplayRequest


class ReplayRing:
    """A bounded ring of encoded publications of one epoch, answering `since` and `last` queries.

    Publications are kept as the bytes that were published (no re-encoding per request), and a
    reply carries at most `max_bytes` of them: a larger answer says `more`, and the asker goes on
    from the last one it got, so one small request can never make a huge reply.
    """

    def __init__(self, epoch: int, size: int, max_bytes: int, ended: list[tuple[int, int]] | None = None) -> None:
        self.epoch, self.max_bytes = epoch, max_bytes
        self.ended = ended or []  # (epoch, last seq) of the runs before, newest first, told in every reply
        # the newest of them that published something: what subscribers from before `ended` read
        self.previous = next(((e, seq) for e, seq in self.ended if seq), (0, 0))
        self.ring: deque[tuple[int, bytes]] = deque(maxlen=max(1, size))  # (seq, encoded publication)

    def append(self, seq: int, publication: bytes) -> None:
        self.ring.append((seq, publication))

    def resize(self, size: int, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        if size != self.ring.maxlen:
            self.ring = deque(self.ring, maxlen=max(1, size))

    def answer(self, request: ReplayRequest) -> ReplayReply[msgspec.Raw]:
        held = list(self.ring)
        if request.since is not None:
            oldest = held[0][0] if held else request.since + 1
            wanted = [entry for entry in held if entry[0] > request.since]
            complete = oldest <= request.since + 1
        else:
            last = max(0, request.last or 0)
            wanted = held[-last:] if last else []
            complete = len(wanted) == last or not held or held[0][0] == 1
        sent: list[msgspec.Raw] = []
        size = 0
        for _, data in wanted:
            if sent and size + len(data) > self.max_bytes:
                break
            sent.append(msgspec.Raw(data))
            size += len(data)
        more = len(sent) < len(wanted)
        return ReplayReply(self.epoch, complete, sent, more, *self.previous, ended=self.ended)
