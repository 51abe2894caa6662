"""The synthetic market's trading days: each run trades a session of its own, later than the last run's.

A mesh keeps per-ticker state by session (docs/state.md): if a second run of the
synthetic market started on the day the first one traded, its trades would meet
the first run's session highs, windows and cooldowns. So, unless `--start` is
given, every run takes the next unused session day, starting FIRST_DAY_BACK days
ago (history, so the router's `max_future_s` never refuses the sim's clock, which
runs faster than the wall clock), and opens at 14:30 UTC. The next unused day is
kept in `<state.dir>/sim-sessions.json`, reserved when a run starts and moved on
as the run's event time crosses into later days, so a kill -9 never reuses a day.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tickmesh.durable import move_aside, write_atomic

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 1_000_000_000
FIRST_DAY_BACK = 1_000  # the first run trades the session this many days ago
OPEN_NS = (14 * 3_600 + 30 * 60) * 1_000_000_000  # 14:30 UTC: 09:30 in New York (winter)
FILE = "sim-sessions.json"


class SessionDays:
    """The next unused session day of the synthetic market, kept in the state folder."""

    def __init__(self, state_dir: str | Path, session_start_s: int = 0, now_ns: int | None = None) -> None:
        self.path = Path(state_dir) / FILE
        self.offset_ns = session_start_s * 1_000_000_000
        today = self.day_of(time.time_ns() if now_ns is None else now_ns)
        self.next_day = max(self._read(), today - FIRST_DAY_BACK)

    def day_of(self, t_ns: int) -> int:
        """The session day (days since the epoch, sessions starting at session_start_s) of a time."""
        return (t_ns - self.offset_ns) // DAY_NS

    def start_ns(self) -> int:
        """Reserve the next unused day and return when the run's market opens on it."""
        day = self.next_day
        self._write(day + 1)
        begin = day * DAY_NS + self.offset_ns
        return begin + (OPEN_NS - self.offset_ns) % DAY_NS

    def reached(self, clock_ns: int) -> None:
        """The run's event time is at `clock_ns`: a day it has entered is used."""
        if self.day_of(clock_ns) >= self.next_day:
            self._write(self.day_of(clock_ns) + 1)

    def _read(self) -> int:
        try:
            return int(json.loads(self.path.read_text())["next_day"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = move_aside(self.path)
            log.warning("sim: %s is unreadable (%s); moved aside to %s, starting a new day", self.path, exc, aside)
            return 0

    def _write(self, next_day: int) -> None:
        self.next_day = next_day
        write_atomic(self.path, json.dumps({"next_day": next_day}).encode())
