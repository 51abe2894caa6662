"""What every feed does with its records: pace them in data time, send them in batches, flush at the end."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from tickmesh.config import Config
from tickmesh.curve import secure_context
from tickmesh.producer import FlushTimeout, Producer
from tickmesh.schema import Record

log = logging.getLogger(__name__)


class Pacer:
    """Maps data time to the wall clock: data time runs `factor` times faster than the wall.

    The first data time seen (or `origin_ns`) is "now"; data older than the origin, or
    going backwards (a file sorted by ticker), is never waited for.
    """

    def __init__(self, factor: float, origin_ns: int | None = None, clock: Callable[[], float] = time.monotonic):
        if factor <= 0:
            raise ValueError("the speed factor must be positive")
        self.factor, self.origin_ns, self.clock = factor, origin_ns, clock
        self.origin_wall = clock()

    def delay(self, data_ns: int) -> float:
        """Seconds to wait before data stamped `data_ns` is due."""
        if self.origin_ns is None:
            self.origin_ns, self.origin_wall = data_ns, self.clock()
            return 0.0
        due = self.origin_wall + (data_ns - self.origin_ns) / 1e9 / self.factor
        return max(0.0, due - self.clock())


def sleep(seconds: float, stopped: Callable[[], bool]) -> bool:
    """Sleep in short steps; False if stopped meanwhile."""
    deadline = time.monotonic() + seconds
    while not stopped():
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.1))
    return False


class Sender:
    """Sends record lists through a Producer in messages of at most `batch` records."""

    def __init__(self, config: Config, batch: int, stopped: Callable[[], bool], name: str | None = None) -> None:
        self.ctx = secure_context(config, "feed")
        self.flush_s = config.process.stop_budget(2.5)  # the final flush ends well inside the stop grace
        self.producer = Producer(
            self.ctx, config.endpoints, name=name, should_stop=stopped, routers=config.router.count
        )
        self.batch = max(1, batch)
        self.messages = 0

    @property
    def sent(self) -> int:
        return self.producer.sent_records

    def send(self, records: Sequence[Record]) -> bool:
        """False if stopped before everything was sent."""
        for i in range(0, len(records), self.batch):
            if not self.producer.send(records[i : i + self.batch]):
                return False
            self.messages += 1
        return True

    def finish(self) -> bool:
        """Flush (the router acknowledges everything sent) and close; False if it did not answer in time."""
        timeout_s = self.flush_s
        deadline = time.monotonic() + timeout_s
        self.producer.should_stop = lambda: time.monotonic() > deadline  # even a stopping feed flushes
        try:
            self.producer.flush(timeout_s)
            return True
        except FlushTimeout as exc:
            log.warning("flush failed: %s; records sent just before may be lost", exc)
            return False
        finally:
            self.ctx.destroy(linger=0)  # closes every socket first: term() alone waits for any left open
