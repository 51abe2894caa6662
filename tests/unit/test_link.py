"""When a shard reports to the aggregator: events after a linger, bare progress rarely, a quarter window at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from tickmesh.config import Config, FmvChannel, OhlcvChannel, TickChannel
from tickmesh.schema import High
from workers.link import Link
from workers.shard import EVENTS_NS, PROGRESS_NS, events_linger_ns

MS = 1_000_000
T0 = 10_000 * MS  # the shard's last report


@pytest.fixture
def link() -> Iterator[Link]:
    ctx = zmq.Context()
    link = Link(ctx, Config(), "ohlcv", 0, 0)  # sockets connect lazily: no router needed
    link.last_progress_ns = T0
    yield link
    link.close()
    ctx.term()


def an_event() -> High:
    return High("ohlcv:high:A:0", "A", "ohlcv", 2, 1, 10.0, 0, 1, 2, pct=3.0)


def test_a_channel_that_sends_at_once_does_not_linger_and_a_batched_one_waits_at_most_its_timeout() -> None:
    assert events_linger_ns(TickChannel()) == 0
    assert events_linger_ns(TickChannel(batch_size=50, timeout_ms=100)) == EVENTS_NS
    assert events_linger_ns(OhlcvChannel()) == events_linger_ns(FmvChannel()) == EVENTS_NS
    assert events_linger_ns(OhlcvChannel(timeout_ms=2.5)) == 2_500_000
    assert events_linger_ns(OhlcvChannel(timeout_ms=0)) == 0


def test_events_wait_out_the_linger_since_the_last_report(link: Link) -> None:
    window = 10_000
    link.stream.expected = 5  # records 0-4 processed, none reported
    assert not link.progress_due(T0 + 1, EVENTS_NS, PROGRESS_NS, window)  # nothing found: bare progress waits
    link.pending.append(an_event())
    assert not link.progress_due(T0 + EVENTS_NS - 1, EVENTS_NS, PROGRESS_NS, window)
    assert link.progress_due(T0 + EVENTS_NS, EVENTS_NS, PROGRESS_NS, window)
    assert link.progress_due(T0, 0, PROGRESS_NS, window)  # a channel that sends at once


def test_bare_progress_waits_its_period_unless_a_quarter_of_the_window_is_unreported(link: Link) -> None:
    link.stream.expected = 100  # records 0-99 processed, none reported
    assert not link.progress_due(T0 + PROGRESS_NS - 1, EVENTS_NS, PROGRESS_NS, 1_000)
    assert link.progress_due(T0 + PROGRESS_NS, EVENTS_NS, PROGRESS_NS, 1_000)
    assert link.progress_due(T0 + 1, EVENTS_NS, PROGRESS_NS, 400)  # 100 unreported of a 400-record window
    link.stream.reported = 99
    assert not link.progress_due(T0 + 10 * PROGRESS_NS, EVENTS_NS, PROGRESS_NS, 400)  # all reported
