"""The event tape's source: a Subscriber in a thread, a bounded ring of recent events, batches to the loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from subscriber.client import Subscriber, as_dict
from tickmesh.schema import Publication

log = logging.getLogger(__name__)

BATCH_S = 0.05  # events go to the loop at most this often: one call per batch, not per event
RECV_MS = 20
Message = dict[str, Any]


def event_row(publication: Publication) -> Message:
    """One event as the page shows it: its fields, `kind`, and latency (publish - ingest) in µs."""
    row = as_dict(publication)
    row["kind"] = publication.event.__struct_config__.tag  # type: ignore[attr-defined]
    ingest = publication.event.ingest_ns
    row["latency_us"] = (publication.published_ns - ingest) / 1_000 if ingest else None
    return row


class Tape:
    """Reads the publish stream in its own thread (zmq sockets live in the thread that made them)."""

    def __init__(
        self,
        ctx: zmq.Context,  # type: ignore[type-arg]
        publish: str,
        replay: str,
        ring_size: int,
        deliver: Callable[[list[Message]], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.ctx, self.publish, self.replay = ctx, publish, replay
        self.ring: deque[Message] = deque(maxlen=ring_size)
        self.deliver, self.loop = deliver, loop
        self.received = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tape", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)

    def recent(self, ticker: str = "", limit: int = 200) -> list[Message]:
        """The newest `limit` events in the ring (of `ticker`, if given), oldest first."""
        rows = [r for r in list(self.ring) if not ticker or r.get("ticker") == ticker]
        return rows[-limit:]

    def _run(self) -> None:
        sub = Subscriber(self.publish, replay=self.replay, last=min(200, self.ring.maxlen or 0), ctx=self.ctx)
        try:
            batch: list[Message] = []
            flush_at = time.monotonic() + BATCH_S
            while not self.stopping.is_set():
                publication = sub.recv(timeout_ms=RECV_MS)
                if publication is not None:
                    row = event_row(publication)
                    self.ring.append(row)
                    batch.append(row)
                    self.received += 1
                if batch and time.monotonic() >= flush_at:
                    self.loop.call_soon_threadsafe(self.deliver, batch)
                    batch = []
                if time.monotonic() >= flush_at:
                    flush_at = time.monotonic() + BATCH_S
        except Exception:  # a bug: say so; the page still shows the mesh
            log.exception("the event tape stopped")
        finally:
            sub.close()
