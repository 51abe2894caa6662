"""The subscriber library: events in order, gaps detected from sequence numbers and filled from the replay ring."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TypeVar

import msgspec
import zmq

from tickmesh.boundary import Rejection, decode
from tickmesh.schema import (
    Heartbeat,
    Publication,
    ReplayReply,
    ReplayRequest,
    encoder,
    ended_losses,
    published_decoder,
    replay_reply_decoder,
)
from tickmesh.sockets import make_socket

R = TypeVar("R")

log = logging.getLogger(__name__)

REPLAY_TIMEOUT_MS = 1_000
MAX_REPLAY_ROUNDS = 1_000  # replies of at most replay_max_bytes each


class Subscriber:
    """Receives published events; tracks the sequence to find gaps and a silent publisher.

    Filtering by kind and ticker happens here, after the sequence check, so a
    gap is seen even in events the filter would drop. With a `replay` endpoint,
    a gap is filled from the aggregator's ring (what the ring no longer holds is
    counted as lost), and `last=N` starts with the N most recent events. When the
    aggregator restarts, the new epoch is read from its first publication, and the
    new ring says where the epoch before it ended: what was not received of it (all
    of it, if a whole epoch ran while this subscriber was away) is counted as
    missed and lost.
    """

    def __init__(
        self,
        publish: str,
        *,
        replay: str | None = None,
        kinds: Iterable[str] = (),
        tickers: Iterable[str] = (),
        last: int = 0,
        ctx: zmq.Context | None = None,  # type: ignore[type-arg]
        hwm: int = 100_000,
    ) -> None:
        self.ctx = ctx or zmq.Context.instance()
        self.kinds, self.tickers = frozenset(kinds), frozenset(tickers)
        self.replay_endpoint = replay
        self.sub = make_socket(self.ctx, zmq.SUB, connect=publish, hwm=hwm)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.epoch = 0
        self.last_seq = 0
        self.gaps = 0  # gaps seen
        self.missed = 0  # events in gaps
        self.lost = 0  # events in gaps that the ring could not give back
        self.old_run: tuple[int, int] | None = None  # (epoch, last seq received) of a restarted publisher's old run
        self.rejected = 0  # messages that could not be decoded
        self.stopping_epoch = 0  # the epoch whose aggregator said it is stopping (its heartbeats' `stopping`)
        self.final: tuple[int, int] | None = None  # (epoch, last seq) from an aggregator's final heartbeat
        self.last_heard = time.monotonic()
        self.ready: deque[Publication] = deque()
        if last and replay:
            self._fill(ReplayRequest(last=last))

    def recv(self, timeout_ms: int = 1_000) -> Publication | None:
        """The next event that passes the filter, or None after `timeout_ms` of none."""
        deadline = time.monotonic() + timeout_ms / 1_000
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sub.poll(max(1, int(left * 1_000))):
                return None
            self._receive(self.sub.recv_multipart())
        return self.ready.popleft()

    def stopping(self) -> bool:
        """The aggregator of the current epoch said it is stopping: what its workers flush still follows."""
        return self.epoch != 0 and self.stopping_epoch == self.epoch

    def at_end(self) -> bool:
        """The current epoch ended (its aggregator's final heartbeat) and every event up to its last seq is
        received (those the filter drops included)."""
        return self.final is not None and self.final[0] == self.epoch and self.last_seq >= self.final[1]

    def silent_for(self) -> float:
        """Seconds since anything (event or heartbeat) arrived from the publisher."""
        return time.monotonic() - self.last_heard

    def _receive(self, frames: list[bytes]) -> None:
        self.last_heard = time.monotonic()
        message = decode(published_decoder, frames[-1])
        if isinstance(message, Rejection):
            self.rejected += 1
            log.warning("undecodable publication: %s", message.detail)
            return
        expected_last = message.seq - 1 if isinstance(message, Publication) else message.seq
        if message.epoch != self.epoch:  # first message, or the aggregator restarted
            if self.epoch:  # the new run from its first publication: what came before this one is a gap
                log.warning("publisher restarted (epoch %d → %d)", self.epoch, message.epoch)
                self.old_run, self.last_seq, self.epoch = (self.epoch, self.last_seq), 0, message.epoch
                if self.replay_endpoint and not expected_last:  # no gap to fill: ask where the old one ended
                    self._fill(ReplayRequest(last=0))
            else:
                self.epoch, self.last_seq = message.epoch, expected_last
        if expected_last > self.last_seq:
            self._gap(expected_last)
        if isinstance(message, Publication) and message.seq == self.last_seq + 1:
            self._accept(message)
        if isinstance(message, Heartbeat) and (message.stopping or message.final):
            self.stopping_epoch = message.epoch
            if message.final:
                self.final = (message.epoch, message.seq)

    def _gap(self, up_to: int) -> None:
        missing = up_to - self.last_seq
        self.gaps += 1
        self.missed += missing
        log.warning("gap: %d events missed after seq %d", missing, self.last_seq)
        if self.replay_endpoint:
            self._fill(ReplayRequest(since=self.last_seq, missed=missing), up_to)
        if self.last_seq < up_to:
            self.lost += up_to - self.last_seq
            self.last_seq = up_to

    def _fill(self, request: ReplayRequest, up_to: int | None = None) -> None:
        """Ask the ring for what was missed; accept what it holds, in order. A reply cut at the
        ring's byte bound says `more`: ask again from the last one received."""
        for _ in range(MAX_REPLAY_ROUNDS):
            reply = self._ask(request)
            if reply is None:
                return
            if reply.epoch != self.epoch:
                self.epoch, self.last_seq = reply.epoch, (reply.publications[0].seq - 1 if reply.publications else 0)
            self._old_run_end(reply)
            for publication in reply.publications:
                if up_to is not None and publication.seq > up_to:
                    return
                if publication.seq > self.last_seq:
                    self.lost += publication.seq - self.last_seq - 1
                    self._accept(publication)
            if not reply.more or (up_to is not None and self.last_seq >= up_to):
                return
            request = ReplayRequest(since=self.last_seq)

    def _old_run_end(self, reply: ReplayReply[Publication]) -> None:
        """After a restart, the first ring reply says where the epochs before the new one ended: count what we
        did not get of our old epoch, and of every epoch that ran and ended while we were away."""
        if self.old_run is None:
            return
        epoch, received = self.old_run
        self.old_run = None
        losses, recorded = ended_losses(reply, epoch, received)
        for ended, after, missing in losses:
            self._count_lost(missing)
            if ended == epoch:
                log.warning("gap: %d events of epoch %d after seq %d were not received before it ended",
                            missing, epoch, after)  # fmt: skip
            else:
                log.warning("gap: epoch %d ran and ended while this subscriber was away: its %d events were not "
                            "received", ended, missing)  # fmt: skip
        if not recorded:  # the memory was moved aside, or kept no older ends (or an aggregator from before `ended`)
            log.warning("where epoch %d ended is not recorded: events after seq %d of it, if any, are not counted "
                        "as lost", epoch, received)  # fmt: skip

    def _count_lost(self, missing: int) -> None:
        self.gaps, self.missed, self.lost = self.gaps + 1, self.missed + missing, self.lost + missing

    def _ask(self, request: ReplayRequest) -> ReplayReply[Publication] | None:
        assert self.replay_endpoint is not None
        reply = ask_replay(self.ctx, self.replay_endpoint, request)
        if isinstance(reply, Rejection):
            self.rejected += 1
            return None
        return reply

    def _accept(self, publication: Publication) -> None:
        self.last_seq = publication.seq
        event = publication.event
        if self.kinds and event.__struct_config__.tag not in self.kinds:  # type: ignore[attr-defined]
            return
        if self.tickers and event.ticker not in self.tickers:
            return
        self.ready.append(publication)

    def close(self) -> None:
        self.sub.close(0)


def ask_replay(
    ctx: zmq.Context,  # type: ignore[type-arg]
    endpoint: str,
    request: ReplayRequest,
    timeout_ms: int = REPLAY_TIMEOUT_MS,
) -> ReplayReply[Publication] | Rejection | None:
    """One request to the aggregator's replay ring (a fresh REQ each time, so a lost reply never
    wedges a socket): its reply, a Rejection if the reply did not decode, None if none came."""
    return ask_ring(ctx, endpoint, request, replay_reply_decoder, timeout_ms)


def ask_ring(
    ctx: zmq.Context,  # type: ignore[type-arg]
    endpoint: str,
    request: ReplayRequest,
    decoder: msgspec.msgpack.Decoder[R],
    timeout_ms: int = REPLAY_TIMEOUT_MS,
) -> R | Rejection | None:
    """ask_replay with the reply decoded by `decoder` (the journal keeps each event's bytes as published)."""
    req = make_socket(ctx, zmq.REQ, connect=endpoint, hwm=10)
    try:
        req.send(encoder.encode(request))
        if not req.poll(timeout_ms):
            log.warning("the replay ring at %s did not answer", endpoint)
            return None
        reply = decode(decoder, req.recv())
    finally:
        req.close(0)
    if isinstance(reply, Rejection):
        log.warning("bad replay reply: %s", reply.detail)
    return reply


def as_dict(publication: Publication) -> dict[str, object]:
    """One flat JSON-ready object: the event's fields plus `kind`, `seq`, `epoch`, `published_ns`."""
    out: dict[str, object] = msgspec.to_builtins(publication.event)
    out["seq"] = publication.seq
    out["epoch"] = publication.epoch
    out["published_ns"] = publication.published_ns
    return out
