"""The aggregator process: dedup events, order them by priority, publish them with sequence and heartbeat."""

from __future__ import annotations

import logging
import time

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from aggregator.dedup import Deduplicator
from aggregator.ring import ReplayRing
from tickmesh.bus import BusClient
from tickmesh.config import CHANNELS, Config, with_endpoints
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, parser, serve, start
from tickmesh.schema import (
    HEARTBEAT_TOPIC,
    Ack,
    Event,
    EventBatch,
    Heartbeat,
    Publication,
    aggregator_input_decoder,
    encoder,
    replay_request_decoder,
    topic_of,
)
from tickmesh.sockets import make_socket

log = logging.getLogger(__name__)

DRAIN_S = 4.5  # SIGTERM → wait this long at most for the workers' last events
DRAIN_LIMIT = 1_000  # event messages per loop turn
RECENT_NS = 10_000_000_000  # a worker heard from this recently is waited for at stop
SNDMORE = int(zmq.SNDMORE)  # a plain int: send_multipart ORs enum flags per part, 3.6x the cost of two sends


class Aggregator:
    """Owns the aggregator's sockets, dedup state, sequence and replay ring; `run` is its one loop."""

    def __init__(self, config: Config, ctx: zmq.Context, stop: StopFlag) -> None:  # type: ignore[type-arg]
        self.config, self.stop = config, stop
        ep, ac = config.endpoints, config.aggregator
        self.epoch = time.time_ns()
        self.metrics = Metrics()
        self.dedup = Deduplicator(ac)
        self.ring = ReplayRing(self.epoch, ac.replay_size)
        self.pull = make_socket(ctx, zmq.PULL, bind=ep.events, hwm=100_000)
        self.pub = make_socket(ctx, zmq.XPUB, bind=ep.publish, hwm=ac.pub_hwm)
        self.replay = make_socket(ctx, zmq.ROUTER, bind=ep.replay, hwm=1_000)
        self.acks = make_socket(ctx, zmq.PUSH, connect=ep.acks, hwm=10_000, linger_ms=500, immediate=True)
        self.monitor = self.pub.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.bus = BusClient(
            ctx, config, process="aggregator", role="aggregator", channels=list(CHANNELS), metrics=self.metrics
        )
        self.seq = 0
        self.last_sent_ns = 0
        self.subscribers = 0
        # (channel, shard) → (its current worker instance, when last heard): a restarted shard's
        # new instance replaces the dead one, which will never say done
        self.workers: dict[tuple[str, int], tuple[str, int]] = {}

    def run(self) -> int:
        poller = zmq.Poller()
        for sock in (self.pull, self.pub, self.replay, self.monitor, self.bus.sub):
            poller.register(sock, zmq.POLLIN)
        log.info("publishing on %s", self.config.endpoints.publish)
        deadline = None
        while deadline is None or (time.monotonic() < deadline and self._waiting_for_workers()):
            if self.stop and deadline is None:
                deadline = time.monotonic() + DRAIN_S
            ready = dict(poller.poll(self._timeout_ms()))
            if self.pull in ready:
                self._drain_events()
            if self.pub in ready:
                self._drain_subscriptions()
            if self.replay in ready:
                self._answer_replay()
            if self.monitor in ready:
                self._count_subscribers()
            if self.bus.sub in ready:
                self._apply_config()
            self._heartbeat()
            self.bus.report()
        self.close()
        return 0

    def _timeout_ms(self) -> int:
        due_ns = self.last_sent_ns + int(self.config.aggregator.heartbeat_s * 1e9) - time.monotonic_ns()
        return max(0, min(100, due_ns // 1_000_000 + 1))

    def _waiting_for_workers(self) -> bool:
        now = time.monotonic_ns()
        return any(now - heard < RECENT_NS for _, heard in self.workers.values())

    # -- events in -------------------------------------------------------------------
    def _drain_events(self) -> None:
        arrived: list[Event] = []
        progress: dict[tuple[str, int, int], int] = {}  # (channel, shard, epoch) → records covered
        for _ in range(DRAIN_LIMIT):
            try:
                frame = self.pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                message = aggregator_input_decoder.decode(frame)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.metrics.count("rejected")
                log.warning("undecodable event message: %s", exc)
                continue
            if isinstance(message, EventBatch):
                self.workers[(message.channel, message.shard)] = (message.worker, time.monotonic_ns())
                arrived.extend(message.events)
                key = (message.channel, message.shard, message.epoch)
                progress[key] = max(progress.get(key, -1), message.upto)
            else:
                shard = (message.channel, message.shard)
                if self.workers.get(shard, ("",))[0] == message.worker:
                    del self.workers[shard]
        self._publish(arrived)
        self._confirm(progress)

    def _confirm(self, progress: dict[tuple[str, int, int], int]) -> None:
        """Tell the router which records' events are now published, so it can let go of them."""
        for (channel, shard, epoch), upto in progress.items():
            try:
                self.acks.send(encoder.encode(Ack(channel, shard, epoch, upto, "aggregator", "delivered")), zmq.NOBLOCK)
            except zmq.Again:  # the router is gone or busy; a later confirmation covers this one
                self.metrics.count("acks.unsent")

    def _publish(self, arrived: list[Event]) -> None:
        """Admit what is new, then publish it highest priority first (arrival order within one)."""
        counters = self.metrics.counters
        counters["received"] += len(arrived)
        now_wall = time.time_ns()
        admitted = []
        for event in arrived:
            reason = self.dedup.admit(event, now_wall)
            if reason is None:
                admitted.append(event)
            else:
                counters[f"deduplicated.{reason}"] += 1
        admitted.sort(key=lambda e: e.priority)
        for event in admitted:
            self.seq += 1
            publication = Publication(self.seq, self.epoch, time.time_ns(), event)
            self.pub.send(topic_of(event), SNDMORE)
            self.pub.send(encoder.encode(publication))
            self.ring.append(publication)
            self.metrics.latencies[f"{event.source}.latency"].record_ns(publication.published_ns - event.ingest_ns)
        if admitted:
            counters["published"] += len(admitted)
            self.last_sent_ns = time.monotonic_ns()

    def _heartbeat(self) -> None:
        if time.monotonic_ns() - self.last_sent_ns >= self.config.aggregator.heartbeat_s * 1e9:
            beat = Heartbeat(self.seq, self.epoch, time.time_ns())
            self.pub.send(HEARTBEAT_TOPIC, SNDMORE)
            self.pub.send(encoder.encode(beat))
            self.last_sent_ns = time.monotonic_ns()

    # -- subscribers -----------------------------------------------------------------
    def _drain_subscriptions(self) -> None:
        while True:  # XPUB hands us (un)subscriptions; reading them keeps its queue empty
            try:
                self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _count_subscribers(self) -> None:
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            self.subscribers += 1 if event["event"] == zmq.EVENT_ACCEPTED else -1
        self.metrics.gauges["subscribers"] = float(max(0, self.subscribers))

    def _answer_replay(self) -> None:
        try:
            identity, *_, payload = self.replay.recv_multipart(zmq.NOBLOCK)
        except (zmq.Again, ValueError):
            return
        try:
            reply = encoder.encode(self.ring.answer(replay_request_decoder.decode(payload)))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.metrics.count("replay.rejected")
            reply = encoder.encode({"type": "error", "error": str(exc)})
        self.metrics.count("replay.requests")
        self.replay.send_multipart([identity, b"", reply])

    # -- config and stopping -----------------------------------------------------------
    def _apply_config(self) -> None:
        new = self.bus.receive(self.config)
        if new is None:
            return
        self.config = new
        self.dedup.configure(new.aggregator)
        self.ring.resize(new.aggregator.replay_size)
        log.info("applied config version %d", self.bus.version)
        self.bus.report(force=True)

    def close(self) -> None:
        self.bus.report(force=True)
        self.pub.disable_monitor()
        for sock in (self.monitor, self.pull, self.pub, self.replay, self.acks):
            sock.close(linger=500)
        self.bus.close()


def main(argv: list[str] | None = None) -> int:
    p = parser("tickmesh-aggregator", "Deduplicate, order and publish the workers' events.")
    p.add_argument("--publish", help="PUB endpoint to bind (default from config)")
    args = p.parse_args(argv)
    config = start(args, "aggregator")
    if config is None:
        return 2
    config = with_endpoints(config, publish=args.publish)
    return serve(config, "aggregator", lambda ctx, stop: Aggregator(config, ctx, stop).run())
