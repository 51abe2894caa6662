"""The replay ring: the most recent publications, for late joiners and subscribers that saw a gap."""

from __future__ import annotations

from collections import deque

from tickmesh.schema import Publication, ReplayReply, ReplayRequest


class ReplayRing:
    """A bounded ring of publications of one epoch, answering `since` and `last` queries."""

    def __init__(self, epoch: int, size: int) -> None:
        self.epoch = epoch
        self.ring: deque[Publication] = deque(maxlen=max(1, size))

    def append(self, publication: Publication) -> None:
        self.ring.append(publication)

    def resize(self, size: int) -> None:
        if size != self.ring.maxlen:
            self.ring = deque(self.ring, maxlen=max(1, size))

    def answer(self, request: ReplayRequest) -> ReplayReply:
        held = list(self.ring)
        if request.since is not None:
            oldest = held[0].seq if held else request.since + 1
            wanted = [p for p in held if p.seq > request.since]
            return ReplayReply(self.epoch, oldest <= request.since + 1, wanted)
        last = max(0, request.last or 0)
        wanted = held[-last:] if last else []
        return ReplayReply(self.epoch, len(wanted) == last or not held or held[0].seq == 1, wanted)
