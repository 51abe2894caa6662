"""Flush marks are acknowledged only once what was placed before them has left for a worker."""

from __future__ import annotations

from router.marks import REFUSED, ROUTED, WAITING, Marks
from router.outbox import Outbox
from tickmesh.config import OhlcvChannel, TickChannel
from tickmesh.schema import Checkpointed, Delivered, Trade

T0 = 1_767_225_600_000_000_000


def box(window: int = 100, **config: object) -> Outbox:
    return Outbox("tick", 0, 1, TickChannel(**config), window=window, now_ns=0)  # type: ignore[arg-type]


def place(outbox: Outbox, n: int) -> None:
    outbox.add_many([Trade("A", 1.0, 1, T0 + i) for i in range(n)], 0, 0)


def release(outbox: Outbox, upto: int) -> None:
    outbox.stream.on_ack(Delivered("tick", 0, 1, upto, "aggregator"), 0)
    outbox.stream.on_ack(Checkpointed("tick", 0, 1, upto, "w"), 0)


def test_a_mark_waits_until_every_record_before_it_is_sent() -> None:
    held, free = box(window=2), box()
    place(held, 5)
    place(free, 1)
    marks = Marks()
    marks.add("p", 1, [held, free])
    assert marks.answer("p", 1) == WAITING
    free.take(0), held.take(0)  # the window lets two of five go
    marks.settle()
    assert marks.answer("p", 1) == WAITING
    release(held, 1)
    held.take(0)
    place(held, 1)  # after the mark: not waited for
    marks.settle()
    assert marks.answer("p", 1) == WAITING  # one of the five still waits for the window
    release(held, 3)
    held.take(0)
    marks.settle()
    assert marks.answer("p", 1) == ROUTED and marks.answer("p", 2) == WAITING


def test_conflated_records_count_as_routed_and_a_stopping_router_refuses_the_rest() -> None:
    ohlcv = Outbox("ohlcv", 0, 1, OhlcvChannel(paused=True), window=100, now_ns=0)
    place(ohlcv, 3)
    marks = Marks()
    marks.add("p", 1, [ohlcv])
    ohlcv.conflate()  # three trades of one ticker: two conflated, one still waits (paused)
    marks.settle()
    assert marks.answer("p", 1) == WAITING
    assert marks.refuse_pending() == 1
    assert marks.answer("p", 1) == REFUSED
    marks.add("q", 1, [])  # nothing was waiting: routed at once
    assert marks.answer("q", 1) == ROUTED
