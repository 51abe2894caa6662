"""History from the journal, then the live stream, with no gap and no duplicate at the seam (docs/journal.md).

The live subscription starts first and its first message fixes the seam: (epoch E, seq B), the last
publication before the first one received live. History is every journaled event from the asked time
up to (E, B) in publication order, read once the journal has written that far; live events follow
from B + 1, and anything at or below the last one shown is dropped, so nothing is shown twice.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator

from journal.query import MAX_LIMIT, build_query
from journal.store import SqlStore
from subscriber.client import Subscriber
from tickmesh.schema import Publication

log = logging.getLogger(__name__)

FIRST_MESSAGE_S = 5.0  # the aggregator heartbeats every second when quiet
CATCH_UP_S = 10.0  # how long to wait for the journal to write up to the seam


class HistoryError(RuntimeError):
    """History cannot be read: the message says why."""


class HistoryThenLive:
    """Publications since a data time from the journal, then live ones from an unfiltered Subscriber."""

    def __init__(
        self,
        sub: Subscriber,
        store: SqlStore,
        since: str,
        *,
        kinds: Iterable[str] = (),
        tickers: Iterable[str] = (),
        run: str = "",
        catch_up_s: float = CATCH_UP_S,
    ) -> None:
        self.sub, self.store, self.run = sub, store, run  # the live journal's run (journal.run): its rows only
        self.query = build_query(since=since, kinds=kinds, tickers=tickers, run=run, order="published", limit=MAX_LIMIT)
        self.kinds, self.tickers = frozenset(self.query.kinds), frozenset(self.query.tickers)
        self.live: deque[Publication] = deque()
        try:
            self.seam = self._join()
            self.missing = self._wait_for_journal(catch_up_s)
            log.info(
                "seam: history up to seq %d of epoch %d from the journal, live after it", self.seam[1], self.seam[0]
            )
        except BaseException:
            store.close()
            raise
        self.shown = (0, 0)  # (epoch, seq) of the last publication returned
        self.history: Iterator[Publication] | None = self._history()

    def _join(self) -> tuple[int, int]:
        """Receive live until the first message: (epoch, seq) of the last publication before live begins."""
        deadline = time.monotonic() + FIRST_MESSAGE_S
        while not self.sub.epoch:
            if time.monotonic() > deadline:
                raise HistoryError(f"nothing from the publisher within {FIRST_MESSAGE_S:g} s")
            if (publication := self.sub.recv(timeout_ms=100)) is not None:
                self.live.append(publication)
        last_before = self.live[0].seq - 1 if self.live else self.sub.last_seq
        return (self.sub.epoch, last_before)

    def _wait_for_journal(self, catch_up_s: float) -> int:
        """Wait until the journal has written up to the seam; the publications it still lacks (0 normally)."""
        deadline = time.monotonic() + catch_up_s
        while (position := self.store.position(self.run) or (0, 0)) < self.seam:
            if time.monotonic() > deadline:
                behind = self.seam[1] - position[1] if position[0] == self.seam[0] else self.seam[1]
                log.warning("the journal is %d publications behind the live stream: history has a gap", behind)
                return behind
            while (publication := self.sub.recv(timeout_ms=20)) is not None:  # keep the live queue moving
                self.live.append(publication)
        return 0

    def _history(self) -> Iterator[Publication]:
        for row in self.store.pages(self.query):
            if (row.epoch, row.seq) > self.seam:
                break
            yield row.publication()

    def recv(self, timeout_ms: int = 1_000) -> Publication | None:
        """The next publication: history first, then live (filtered by kind and ticker here)."""
        if self.history is not None:
            publication = next(self.history, None)
            if publication is not None:
                self.shown = (publication.epoch, publication.seq)
                return publication
            self.history = None
            self.store.close()
        while True:
            publication = self.live.popleft() if self.live else self.sub.recv(timeout_ms)
            if publication is None:
                return None
            if (publication.epoch, publication.seq) <= self.shown:
                continue  # already shown from the journal
            self.shown = (publication.epoch, publication.seq)
            if self._wanted(publication):
                return publication

    def _wanted(self, publication: Publication) -> bool:
        event = publication.event
        kind = event.__struct_config__.tag  # type: ignore[attr-defined]
        return (not self.kinds or kind in self.kinds) and (not self.tickers or event.ticker in self.tickers)

    def close(self) -> None:
        if self.history is not None:
            self.store.close()
        self.sub.close()
