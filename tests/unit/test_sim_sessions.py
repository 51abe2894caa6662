"""The synthetic market's session days: every run a later day of its own, in the past, kept across kill -9."""

from __future__ import annotations

from pathlib import Path

from feeds.session import DAY_NS, FIRST_DAY_BACK, OPEN_NS, SessionDays

NOW = 20_000 * DAY_NS + 5 * 3_600 * 1_000_000_000  # day 20000, 05:00 UTC


def test_each_run_takes_a_later_day_than_the_last_and_opens_at_14_30(tmp_path: Path) -> None:
    first = SessionDays(tmp_path, now_ns=NOW).start_ns()
    second = SessionDays(tmp_path, now_ns=NOW).start_ns()
    assert first == (20_000 - FIRST_DAY_BACK) * DAY_NS + OPEN_NS
    assert second == first + DAY_NS
    assert second < NOW  # history: the router's max_future_s never refuses it


def test_a_run_that_crosses_midnight_uses_up_the_days_it_entered(tmp_path: Path) -> None:
    days = SessionDays(tmp_path, now_ns=NOW)
    start = days.start_ns()
    days.reached(start + 3 * DAY_NS)  # a long run, killed -9 there: nothing else is written
    assert SessionDays(tmp_path, now_ns=NOW).start_ns() == start + 4 * DAY_NS


def test_sessions_follow_session_start_s(tmp_path: Path) -> None:
    start = SessionDays(tmp_path, session_start_s=13 * 3_600, now_ns=NOW).start_ns()
    assert start % DAY_NS == OPEN_NS  # still 14:30 UTC, inside the session that began at 13:00
    assert (start - 13 * 3_600 * 1_000_000_000) // DAY_NS == 19_999 - FIRST_DAY_BACK  # 05:00 is still day 19999


def test_an_unreadable_file_is_moved_aside_and_a_fresh_day_taken(tmp_path: Path) -> None:
    (tmp_path / "sim-sessions.json").write_text("{not json")
    start = SessionDays(tmp_path, now_ns=NOW).start_ns()
    assert start == (20_000 - FIRST_DAY_BACK) * DAY_NS + OPEN_NS
    assert len(list(tmp_path.glob("sim-sessions.json.unreadable-*"))) == 1
