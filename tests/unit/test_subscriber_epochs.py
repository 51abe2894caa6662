"""The subscriber library after a publisher restart: what it had not received of the epochs before the new
one is counted, as the new ring says where the last of them ended (the journal's reader does the same)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from subscriber.client import Subscriber

OLD = 1_700_000_000_000_000_000


@pytest.fixture
def sub() -> Iterator[Subscriber]:
    ctx = zmq.Context()
    sub = Subscriber("inproc://publish", ctx=ctx)
    yield sub
    sub.close()
    ctx.term()


def lost_at_restart(sub: Subscriber, received: tuple[int, int], ended: tuple[int, int]) -> tuple[int, int, int]:
    """Had `received` (epoch, last seq); the new ring says the epoch before it `ended` (epoch, seq)."""
    sub.old_run = received
    sub._old_run_end(*ended)
    assert sub.old_run is None
    return sub.gaps, sub.missed, sub.lost


def test_the_unreceived_tail_of_its_own_epoch_is_counted(sub: Subscriber) -> None:
    assert lost_at_restart(sub, (OLD, 50), (OLD, 80)) == (1, 30, 30)


def test_an_epoch_received_to_its_end_loses_nothing(sub: Subscriber) -> None:
    assert lost_at_restart(sub, (OLD, 80), (OLD, 80)) == (0, 0, 0)


def test_a_whole_epoch_that_ran_while_it_was_away_is_counted(sub: Subscriber, caplog: pytest.LogCaptureFixture) -> None:
    assert lost_at_restart(sub, (OLD, 50), (OLD + 5, 20)) == (1, 20, 20)
    assert f"epoch {OLD + 5} ran and ended while this subscriber was away: its 20 events" in caplog.text


def test_an_epoch_whose_end_is_not_recorded_counts_nothing_and_says_so(
    sub: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    assert lost_at_restart(sub, (OLD, 50), (OLD - 5, 10)) == (0, 0, 0)
    assert lost_at_restart(sub, (OLD, 50), (0, 0)) == (0, 0, 0)  # no epoch before the new one recorded at all
    assert caplog.text.count(f"where epoch {OLD} ended is not recorded") == 2
