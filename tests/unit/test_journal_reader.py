"""The journal's reader at a new epoch: what it had not read of the epochs before is counted as lost."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
import zmq

from journal.reader import Reader
from tickmesh.metrics import Metrics
from tickmesh.schema import Heartbeat, RawPublication, ReplayReply, encoder

OLD, NEW = 1_700_000_000_000_000_000, 1_700_000_100_000_000_000


@pytest.fixture
def reader() -> Iterator[Reader]:
    ctx = zmq.Context()
    reader = Reader(ctx, "inproc://publish", "inproc://replay", Metrics())
    yield reader
    reader.close()
    ctx.term()


def new_epoch(
    reader: Reader,
    at: tuple[int, int],
    ended: list[tuple[int, int]],
    first: int = 1,
    previous: tuple[int, int] = (0, 0),
) -> int:
    """Journal at `at` reads a new epoch whose ring starts at `first` and says where the epochs before it
    `ended` (or, from an aggregator before `ended`, only the `previous` one); the publications counted as lost."""
    reader.epoch, reader.last = at
    publications = [RawPublication(first, NEW, NEW, msgspec.Raw(b""))]
    reader._new_epoch(ReplayReply(NEW, True, publications, False, *previous, ended=ended))
    assert (reader.epoch, reader.last) == (NEW, first - 1)
    return reader.metrics.counters["journal.lost"]


def test_the_unread_tail_of_the_journals_own_epoch_is_counted(reader: Reader) -> None:
    assert new_epoch(reader, (OLD, 50), [(OLD, 80)]) == 30
    assert new_epoch(reader, (OLD, 50), [], previous=(OLD, 90)) == 30 + 40  # an aggregator from before `ended`


def test_an_epoch_read_to_its_end_loses_nothing_and_one_that_published_nothing_is_no_gap(
    reader: Reader, caplog: pytest.LogCaptureFixture
) -> None:
    assert new_epoch(reader, (OLD, 80), [(OLD, 80)]) == 0
    assert new_epoch(reader, (OLD, 0), [(OLD, 0), (OLD - 5, 80)]) == 0
    assert "not recorded" not in caplog.text


def test_whole_epochs_missed_are_counted_and_so_is_what_the_new_ring_no_longer_holds(reader: Reader) -> None:
    assert new_epoch(reader, (OLD - 5, 10), [(OLD, 80), (OLD - 2, 0), (OLD - 5, 12)], first=41) == 80 + 2 + 40


def test_an_epoch_whose_end_is_not_recorded_counts_nothing_and_says_so(
    reader: Reader, caplog: pytest.LogCaptureFixture
) -> None:
    assert new_epoch(reader, (OLD, 50), [(OLD - 5, 10)]) == 0
    assert f"where epoch {OLD} ended is not recorded" in caplog.text


def test_a_stopping_aggregators_heartbeats_are_heard_while_a_fill_is_pending(reader: Reader) -> None:
    """The journal waits at its stop for `final`: it must not miss it because a gap was being filled."""
    reader.epoch, reader.last, reader.need_fill = OLD, 10, True
    reader._live(encoder.encode(Heartbeat(12, OLD, NEW, stopping=True)))
    assert reader.stopping and reader.final is None
    reader._live(encoder.encode(Heartbeat(14, OLD, NEW, stopping=True, final=True)))
    assert reader.final == 14 and not reader.ended()  # 11..14 still to read
    reader.last, reader.need_fill = 14, False
    assert reader.ended()
