"""The journal's view of the publish stream: every publication after its position, in order, gaps filled from
the replay ring, and what the ring no longer holds counted as lost (never silently)."""

from __future__ import annotations

import logging
import time

import zmq

from journal.store import Entry, entry_of_raw
from subscriber.client import ask_ring
from tickmesh.boundary import Rejection, decode
from tickmesh.metrics import Metrics
from tickmesh.schema import (
    Heartbeat,
    RawPublication,
    ReplayReply,
    ReplayRequest,
    ended_losses,
    raw_published_decoder,
    raw_replay_reply_decoder,
)
from tickmesh.sockets import make_socket

log = logging.getLogger(__name__)

RETRY_S = 1.0  # a ring that did not answer is asked again after this
DRAIN_LIMIT = 5_000  # live messages per turn
SUB_HWM = 200_000  # the journal reads in batches: room for a few seconds of a busy stream


class Reader:
    """Follows the aggregator from a journaled (epoch, seq); `pending` is what is accepted and not yet written.

    Within an epoch, seq counts up by one per publication: a jump (or a heartbeat announcing a higher seq)
    is a gap, filled from the ring. A new epoch (the aggregator restarted; seq starts again at 1) is read from
    the start of what its ring holds; its ring says where the epoch before it ended, so what the journal had
    not read of that one is counted as lost. Duplicates are harmless: the store keeps each event id once.
    A stopping aggregator says so (`stopping`), then ends its epoch with a `final` heartbeat: `ended` says
    when everything up to it is read.
    """

    def __init__(self, ctx: zmq.Context, publish: str, replay: str, metrics: Metrics) -> None:  # type: ignore[type-arg]
        self.ctx, self.replay, self.metrics = ctx, replay, metrics
        self.sub = make_socket(ctx, zmq.SUB, connect=publish, hwm=SUB_HWM)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.epoch, self.last = 0, 0  # the last publication accepted
        self.published = 0  # the highest seq the publisher announced in this epoch
        self.pending: list[Entry] = []  # in seq order
        self.need_fill = True
        self.next_try = 0.0
        self.heard = 0.0  # monotonic time of the last publication or heartbeat (0: none yet)
        self.stopping = False  # the aggregator said it is stopping (this epoch)
        self.final: int | None = None  # the seq its final heartbeat said this epoch ended at

    def resume(self, position: tuple[int, int] | None) -> None:
        """Start (again) after `position`, the last one written; None: a new journal, from what the ring holds."""
        self.epoch, self.last = position or (0, 0)
        self.published = max(self.published, self.last) if position else 0
        self.pending.clear()
        self.need_fill, self.next_try = True, 0.0

    def ended(self) -> bool:
        """The aggregator's epoch ended (its final heartbeat) and everything up to its last seq is read."""
        return self.final is not None and self.last >= self.final and not self.need_fill

    def lag(self, written: tuple[int, int] | None) -> int:
        """Publications announced but not yet written (published seq − journaled seq)."""
        if written is None or written[0] != self.epoch:
            return self.published
        return max(0, self.published - written[1])

    def poll(self, timeout_ms: int) -> None:
        """Fill a gap if one is open, then take what the live stream has (waiting at most `timeout_ms`).

        Frame by frame: recv_multipart cost 2.3 µs a message against 1.1 (pyzmq's getsockopt sugar makes an
        enum each time), on the thread whose GIL time the writer waits for."""
        if self.need_fill and time.monotonic() >= self.next_try:
            self._fill()
        if not self.sub.poll(timeout_ms):
            return
        self.heard = time.monotonic()  # once per turn, not per message: something came from the aggregator
        recv, more = self.sub.recv, self.sub.get
        for _ in range(DRAIN_LIMIT):
            try:
                payload = recv(zmq.NOBLOCK)
                while more(zmq.RCVMORE):  # [topic, payload]: the payload is the last frame
                    payload = recv(zmq.NOBLOCK)  # a message's frames arrive together: already here
            except zmq.Again:
                return
            self._live(payload)

    def _live(self, payload: bytes) -> None:
        # The event stays encoded: it is validated once (entry_of_raw) and stored as the bytes published.
        message = decode(raw_published_decoder, payload)
        if isinstance(message, Rejection):
            self._undecodable(message)
            return
        if message.epoch != self.epoch:
            self.need_fill = True  # a new epoch: read it from the ring, from its start
            return
        self.published = max(self.published, message.seq)
        if isinstance(message, Heartbeat):  # heard even while a fill is pending: the stop is this epoch's
            self.stopping = self.stopping or message.stopping
            if message.final:
                self.final = message.seq
        if self.need_fill:
            return
        if isinstance(message, Heartbeat):
            if message.seq > self.last:
                self._gap(message.seq)
        elif message.seq == self.last + 1:
            self._accept(message)
        elif message.seq > self.last:
            self._gap(message.seq - 1)
            if message.seq == self.last + 1:  # the ring filled what came before it
                self._accept(message)

    def _gap(self, up_to: int) -> None:
        self.metrics.count("journal.gaps")
        log.warning("gap: publications %d..%d of epoch %d not received live; asking the ring", self.last + 1,
                    up_to, self.epoch)  # fmt: skip
        self._fill()

    def _fill(self) -> None:
        """Ask the ring for what follows the position (or for all it holds, in a new epoch)."""
        reply = self._ask(ReplayRequest(since=self.last if self.epoch else 0))
        if reply is None:
            self.need_fill, self.next_try = True, time.monotonic() + RETRY_S
            return
        if reply.epoch != self.epoch:
            if self.epoch and self.last:  # it answered `since` our old epoch's seq: ask for all of the new one
                reply = self._ask(ReplayRequest(since=0)) or reply
            self._new_epoch(reply)
        held = [p for p in reply.publications if p.seq > self.last]
        if held and held[0].seq > self.last + 1:
            self._lost(held[0].seq - self.last - 1, f"after seq {self.last} of epoch {self.epoch}")
            self.last = held[0].seq - 1
        for publication in held:
            if publication.seq == self.last + 1:
                self._accept(publication)
        self.metrics.count("journal.filled", len(held))
        if not held and self.published > self.last:  # announced, but gone from the ring
            self._lost(self.published - self.last, f"after seq {self.last} of epoch {self.epoch}")
            self.last = self.published
        self.need_fill = reply.more  # the reply stopped at the ring's byte bound: ask on from here at once

    def _new_epoch(self, reply: ReplayReply[RawPublication]) -> None:
        first = reply.publications[0].seq if reply.publications else 1
        if self.epoch:
            self.metrics.count("journal.epoch_changes")
            log.warning("the aggregator restarted (epoch %d -> %d): reading its ring from seq %d", self.epoch,
                        reply.epoch, first)  # fmt: skip
            self._old_epoch_end(reply)
            if first > 1:
                self._lost(first - 1, f"before seq {first} of the new epoch {reply.epoch}")
        else:
            log.info("new journal: starting at seq %d of epoch %d (the oldest the ring holds)", first, reply.epoch)
        self.epoch, self.last, self.published = reply.epoch, first - 1, first - 1
        self.stopping, self.final = False, None

    def _old_epoch_end(self, reply: ReplayReply[RawPublication]) -> None:
        """Count what the journal had not read of the epochs before the new one (the new ring says where each
        of them ended; their publications are gone with the old rings)."""
        losses, recorded = ended_losses(reply, self.epoch, self.last)
        for ended, after, missing in losses:
            if ended == self.epoch:
                self._lost(missing, f"after seq {after} of epoch {ended} (it ended at {after + missing})")
            else:  # a whole epoch ran and ended while the journal was away
                self._lost(missing, f"of epoch {ended}, all of it")
        if not recorded:  # the memory was moved aside or kept no older ends, or an aggregator from before `ended`
            log.warning("where epoch %d ended is not recorded: publications after seq %d of it, if any, are not "
                        "counted in journal.lost", self.epoch, self.last)  # fmt: skip

    def _lost(self, n: int, where: str) -> None:
        self.metrics.count("journal.lost", n)
        log.error("LOST %d publications %s: the replay ring no longer holds them (journal.lost)", n, where)

    def _accept(self, publication: RawPublication) -> None:
        self.last = publication.seq
        self.published = max(self.published, publication.seq)
        entry = entry_of_raw(publication)
        if isinstance(entry, Rejection):  # published, but not a valid event: counted, its seq passed over
            self._undecodable(entry)
        else:
            self.pending.append(entry)

    def _undecodable(self, rejection: Rejection) -> None:
        self.metrics.count("journal.undecodable")
        log.warning("undecodable publication: %s", rejection.detail)

    def _ask(self, request: ReplayRequest) -> ReplayReply[RawPublication] | None:
        reply = ask_ring(self.ctx, self.replay, request, raw_replay_reply_decoder)
        return None if isinstance(reply, Rejection) else reply  # asked again after RETRY_S

    def close(self) -> None:
        self.sub.close(0)
