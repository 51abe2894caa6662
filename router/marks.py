"""Producers' flush marks: acknowledged once every record placed before a mark has gone to its worker.

A producer flushes by sending a Mark and asking the sync socket about it
(tickmesh/producer.py). "Routed" means handed to the worker's stream (sent, so
the stream protocol now answers for it), or deliberately conflated or dropped
by the channel's overflow policy (counted there) — not merely buffered in the
router. A router that stops before that refuses the mark ("x"), so a
producer's flush never reports success for records that were not routed.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from router.outbox import Outbox

ROUTED, WAITING, REFUSED = b"1", b"0", b"x"
KEPT = 10_000  # producers remembered (the oldest are forgotten first)


class Marks:
    def __init__(self) -> None:
        self.routed: OrderedDict[str, int] = OrderedDict()  # producer → the highest mark routed
        self.refused: OrderedDict[str, int] = OrderedDict()
        self.pending: deque[tuple[str, int, list[tuple[Outbox, int]]]] = deque()

    def add(self, producer: str, n: int, boxes: list[Outbox]) -> None:
        """A mark arrived: it is routed once each box has settled what was placed in it so far."""
        self.pending.append((producer, n, [(box, box.placed) for box in boxes if box.settled < box.placed]))
        while len(self.pending) > KEPT:
            self._refuse(*self.pending.popleft()[:2])
        self.settle()

    def settle(self) -> None:
        """Move every mark whose records have all left to `routed`."""
        if not self.pending:
            return
        waiting: deque[tuple[str, int, list[tuple[Outbox, int]]]] = deque()
        for producer, n, boxes in self.pending:
            boxes = [(box, placed) for box, placed in boxes if box.settled < placed]
            if boxes:
                waiting.append((producer, n, boxes))
            else:
                _remember(self.routed, producer, n)
        self.pending = waiting

    def answer(self, producer: str, n: int) -> bytes:
        if self.routed.get(producer, -1) >= n:
            return ROUTED
        if self.refused.get(producer, -1) >= n:
            return REFUSED
        return WAITING

    def refuse_pending(self) -> int:
        """The router is stopping: every mark still waiting is refused; how many."""
        count = len(self.pending)
        while self.pending:
            self._refuse(*self.pending.popleft()[:2])
        return count

    def _refuse(self, producer: str, n: int) -> None:
        _remember(self.refused, producer, n)


def _remember(table: OrderedDict[str, int], producer: str, n: int) -> None:
    table[producer] = max(n, table.pop(producer, -1))
    while len(table) > KEPT:
        table.popitem(last=False)
