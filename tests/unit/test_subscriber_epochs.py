"""The subscriber library after a publisher restart: what it had not received of the epochs before the new
one is counted, as the new ring says where each of them ended (the journal's reader does the same)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from subscriber.client import Subscriber
from tickmesh.schema import ReplayReply

OLD = 1_700_000_000_000_000_000
NEW = OLD + 1_000


@pytest.fixture
def sub() -> Iterator[Subscriber]:
    ctx = zmq.Context()
    sub = Subscriber("inproc://publish", ctx=ctx)
    yield sub
    sub.close()
    ctx.term()


def lost_at_restart(
    sub: Subscriber, received: tuple[int, int], ended: list[tuple[int, int]], previous: tuple[int, int] = (0, 0)
) -> tuple[int, int, int]:
    """Had `received` (epoch, last seq); the new ring says where the epochs before it `ended` (newest
    first), or, from an aggregator before `ended`, only the `previous` one that published."""
    sub.old_run = received
    sub._old_run_end(ReplayReply(NEW, True, [], False, *previous, ended=ended))
    assert sub.old_run is None
    return sub.gaps, sub.missed, sub.lost


def test_the_unreceived_tail_of_its_own_epoch_is_counted(sub: Subscriber) -> None:
    assert lost_at_restart(sub, (OLD, 50), [(OLD, 80), (OLD - 5, 9)]) == (1, 30, 30)


def test_an_epoch_received_to_its_end_loses_nothing(sub: Subscriber, caplog: pytest.LogCaptureFixture) -> None:
    assert lost_at_restart(sub, (OLD, 80), [(OLD, 80)]) == (0, 0, 0)
    assert lost_at_restart(sub, (OLD, 0), [(OLD, 0), (OLD - 5, 9)]) == (0, 0, 0)  # an epoch that published nothing
    assert caplog.text == ""


def test_whole_epochs_that_ran_while_it_was_away_are_counted_with_its_own_tail(
    sub: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    assert lost_at_restart(sub, (OLD, 50), [(OLD + 9, 7), (OLD + 5, 20), (OLD + 2, 0), (OLD, 60)]) == (3, 37, 37)
    assert f"epoch {OLD + 9} ran and ended while this subscriber was away: its 7 events" in caplog.text
    assert f"epoch {OLD + 5} ran and ended while this subscriber was away: its 20 events" in caplog.text
    assert f"10 events of epoch {OLD} after seq 50 were not received" in caplog.text
    assert "not recorded" not in caplog.text


def test_an_epoch_whose_end_is_not_recorded_counts_what_is_known_and_says_so(
    sub: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    assert lost_at_restart(sub, (OLD, 50), [(OLD - 5, 10)]) == (0, 0, 0)
    assert lost_at_restart(sub, (OLD, 50), []) == (0, 0, 0)  # no epoch before the new one recorded at all
    assert lost_at_restart(sub, (OLD, 50), [(OLD + 5, 20), (OLD - 5, 10)]) == (1, 20, 20)  # ours moved aside
    assert caplog.text.count(f"where epoch {OLD} ended is not recorded") == 3


def test_an_aggregator_from_before_ended_tells_the_previous_epoch_only(
    sub: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    assert lost_at_restart(sub, (OLD, 50), [], previous=(OLD, 80)) == (1, 30, 30)
    assert lost_at_restart(sub, (OLD, 50), [], previous=(OLD + 5, 20)) == (2, 50, 50)
    assert caplog.text.count(f"where epoch {OLD} ended is not recorded") == 1  # our tail, behind epoch OLD + 5
