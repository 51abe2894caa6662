"""The aggregator process: dedup events, order them by priority, publish them with sequence and heartbeat."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import msgspec
import zmq

from aggregator.dedup import Deduplicator
from aggregator.memory import Memory
from aggregator.ring import ReplayRing
from tickmesh import sched
from tickmesh.boundary import Rejection, decode, decode_single, recv_frames, reject
from tickmesh.bus import BusClient
from tickmesh.config import CHANNELS, Config, router_endpoints, with_endpoints
from tickmesh.durable import hold, next_epoch
from tickmesh.metrics import Metrics
from tickmesh.runtime import StopFlag, mesh_parser, release_memory, serve, start
from tickmesh.schema import (
    HEARTBEAT_TOPIC,
    Event,
    EventBatch,
    Heartbeat,
    Publication,
    WorkerStopping,
    aggregator_input_decoder,
    encoder,
    event_decoder,
    replay_request_decoder,
    topic_of,
)
from tickmesh.sockets import make_socket, monitor_event
from tickmesh.stream import HEARTBEAT_NS, delivered

log = logging.getLogger(__name__)

DRAIN_LIMIT = 1_000  # event messages per loop turn
RECENT_NS = 10_000_000_000  # a stopping worker not heard from for this long is gone: not waited for at stop
STOPPING_GRACE_S = 0.5  # at stop: how long the workers have to say they are stopping too
CONFIRM_NS = 100_000_000  # a stream's confirmations to its router: at most this often (the rest wait, cumulated)
TRIM_DELAY_S = 0.5  # a subscriber gone: its queue's memory is given back to the system after this
SNDMORE = int(zmq.SNDMORE)  # a plain int: send_multipart ORs enum flags per part, 3.6x the cost of two sends


class Aggregator:
    """Owns the aggregator's sockets, dedup state, sequence and replay ring; `run` is its one loop."""

    def __init__(self, config: Config, ctx: zmq.Context, stop: StopFlag) -> None:  # type: ignore[type-arg]
        self.config, self.stop = config, stop
        ep, ac = config.endpoints, config.aggregator
        self.lock = hold(Path(config.state.dir) / "aggregator.lock", "an aggregator")
        self.epoch = next_epoch(Path(config.state.dir) / "aggregator.epoch")  # seq starts over in a new epoch
        self.metrics = Metrics()
        self.dedup = Deduplicator(ac)
        self.memory = Memory(config.state.dir, ac.dedup_capacity, self.epoch)
        self.dedup.preload(self.memory.load())
        self.metrics.counters["dedup_memory.moved_aside"] = self.memory.moved_aside
        self.ring = ReplayRing(self.epoch, ac.replay_size, ac.replay_max_bytes, self.memory.ended)
        self.pull = make_socket(ctx, zmq.PULL, bind=ep.events, hwm=100_000)
        self.pub = make_socket(ctx, zmq.XPUB, bind=ep.publish, hwm=ac.pub_hwm)
        self.replay = make_socket(ctx, zmq.ROUTER, bind=ep.replay, hwm=1_000)
        self.acks = [  # one per router: each confirms its own streams
            make_socket(ctx, zmq.PUSH, connect=router.acks, hwm=10_000, linger_ms=500, immediate=True)
            for router in router_endpoints(config)
        ]
        self.monitor = self.pub.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.bus = BusClient(
            ctx, config, process="aggregator", role="aggregator", channels=list(CHANNELS), metrics=self.metrics
        )
        self.seq = 0
        self.last_sent_ns = 0
        self.stopping = False  # said in every heartbeat from the stop on
        self.grace_end = 0.0  # at stop: until when workers may still say they are stopping too
        self.subscribers = 0
        # (channel, shard) → (its current worker instance, when last heard): a restarted shard's
        # new instance replaces the dead one, which will never say done
        self.workers: dict[tuple[str, int], tuple[str, int]] = {}
        self.stopping_workers: set[str] = set()  # instances that said they are stopping and not yet done
        self.stopped_with: set[str] = set()  # every instance that said it is stopping
        # (router, channel, shard) → (epoch, upto) confirmed
        self.delivered: dict[tuple[int, str, int], tuple[int, int]] = {}
        # (router, channel, shard) → when its last confirmation went, and the (epoch, upto) it confirmed;
        # a stream whose `delivered` differs from it owes the router a confirmation
        self.confirmed: dict[tuple[int, str, int], tuple[int, tuple[int, int]]] = {}
        self.last_reconfirm_ns = 0
        self.trim_at = 0.0  # when to return freed memory to the system (a subscriber left)
        self.ack_unsent = False  # the last confirmation to the router could not be sent (readiness)

    def run(self) -> int:
        poller = zmq.Poller()
        for sock in (self.pull, self.pub, self.replay, self.monitor, self.bus.sub):
            poller.register(sock, zmq.POLLIN)
        log.info("publishing on %s", self.config.endpoints.publish)
        deadline = None
        while deadline is None or (time.monotonic() < deadline and self._waiting_for_workers()):
            if self.stop and deadline is None:
                deadline = time.monotonic() + self.config.process.stop_budget(0.5)
                self.grace_end = time.monotonic() + STOPPING_GRACE_S
                self.stopping = True
                self._send_heartbeat()  # at once: followers (the journal) wait for the final one
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
            self._send_owed(time.monotonic_ns(), force=deadline is not None)
            self._heartbeat()
            self.stop.health.ready("confirmations to the router not sent" if self.ack_unsent else "")
            self.bus.report()
        left = ", ".join(sorted(self.stopping_workers))
        log.info("stopping: %d workers stopped with it%s", len(self.stopped_with),
                 f"; not done (their checkpoints keep what they did not send): {left}" if left else "")  # fmt: skip
        self.close()
        return 0

    def _timeout_ms(self) -> int:
        due_ns = self.last_sent_ns + int(self.config.aggregator.heartbeat_s * 1e9)
        owed = [sent_ns for key, (sent_ns, position) in self.confirmed.items() if self.delivered[key] != position]
        if owed:
            due_ns = min(due_ns, min(owed) + CONFIRM_NS)
        return max(0, min(100, (due_ns - time.monotonic_ns()) // 1_000_000 + 1))

    def _waiting_for_workers(self) -> bool:
        """At stop: wait for the workers stopping too (a whole-mesh stop: they flush what they found) until
        they are done. In the first STOPPING_GRACE_S, any worker heard from may still say it is stopping;
        after it, workers that did not are not stopping with us, and are not waited for."""
        now = time.monotonic_ns()
        live = [instance for instance, heard in self.workers.values() if now - heard < RECENT_NS]
        if time.monotonic() < self.grace_end:
            return bool(live)
        return any(instance in self.stopping_workers for instance in live)

    # -- events in -------------------------------------------------------------------
    def _drain_events(self) -> None:
        arrived: list[Event] = []
        progress: dict[tuple[int, str, int, int], int] = {}  # (router, channel, shard, epoch) → records covered
        for _ in range(DRAIN_LIMIT):
            try:
                frames, peer = recv_frames(self.pull)
            except zmq.Again:
                break
            message = decode_single(aggregator_input_decoder, frames)
            if isinstance(message, Rejection):
                reject(self.metrics, "events", message, peer)
                continue
            if isinstance(message, EventBatch):
                if message.router >= len(self.acks):
                    reject(self.metrics, "events", Rejection("no_router", f"router {message.router}"), peer)
                    continue
                self.workers[(message.channel, message.shard)] = (message.worker, time.monotonic_ns())
                arrived.extend(self._valid_events(message, peer))
                key = (message.router, message.channel, message.shard, message.epoch)
                progress[key] = max(progress.get(key, -1), message.upto)
            elif isinstance(message, WorkerStopping):
                self.workers[(message.channel, message.shard)] = (message.worker, time.monotonic_ns())
                self.stopping_workers.add(message.worker)
                self.stopped_with.add(message.worker)
            else:
                shard = (message.channel, message.shard)
                self.stopping_workers.discard(message.worker)
                if self.workers.get(shard, ("",))[0] == message.worker:
                    del self.workers[shard]
        self._publish(arrived)
        self._confirm(progress)

    def _valid_events(self, batch: EventBatch[msgspec.Raw], peer: str) -> list[Event]:
        """The batch's events that decode and validate and come from the batch's own channel."""
        valid = []
        for raw in batch.events:
            event = decode(event_decoder, raw)
            if isinstance(event, Rejection):
                reject(self.metrics, "events", event, peer)
            elif event.source != batch.channel:
                reject(self.metrics, "events", Rejection("wrong_source", f"{event.source} event from {batch.channel}"))
            else:
                valid.append(event)
        return valid

    def _confirm(self, progress: dict[tuple[int, str, int, int], int]) -> None:
        """Tell each router which records' events are now published, so it can let go of them.

        Cumulative, and at most every CONFIRM_NS per stream: the router needs them only to release
        held batches (which also wait for the worker's checkpoint), and each message wakes it. One
        covering a quarter of the router's window goes at once, so a small window (`router.window`)
        never waits on the 100 ms.
        """
        now = time.monotonic_ns()
        for (router, channel, shard, epoch), upto in progress.items():
            key = (router, channel, shard)
            last = self.delivered.get(key)
            if last is None or last[0] != epoch or last[1] < upto:
                self.delivered[key] = (epoch, upto)
            sent_ns, (_, sent_upto) = self.confirmed.get(key, (0, (-1, -1)))
            if now - sent_ns >= CONFIRM_NS or abs(upto - sent_upto) >= self.config.router.window // 4:
                self._send_delivered(key, now)

    def _send_owed(self, now: int, force: bool = False) -> None:
        """Send the confirmations owed that have waited CONFIRM_NS (all of them when stopping)."""
        for key, (sent_ns, position) in list(self.confirmed.items()):
            if self.delivered[key] != position and (force or now - sent_ns >= CONFIRM_NS):
                self._send_delivered(key, now)

    def _reconfirm(self) -> None:
        """Repeat each stream's last confirmation every heartbeat: a lost one never holds a stream."""
        now = time.monotonic_ns()
        for key in self.delivered:
            self._send_delivered(key, now)

    def _send_delivered(self, key: tuple[int, str, int], now: int) -> None:
        """Confirm a stream's newest delivered position to its router (it replaces any owed one)."""
        router, channel, shard = key
        epoch, upto = position = self.delivered[key]
        self.confirmed[key] = (now, position)
        try:
            self.acks[router].send(delivered(channel, shard, epoch, upto), zmq.NOBLOCK)
            self.metrics.counters["acks.sent"] += 1
            self.ack_unsent = False
        except zmq.Again:  # the router is gone or busy; the next confirmation covers this one
            self.ack_unsent = True
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
            data = encoder.encode(publication)
            self.pub.send(topic_of(event), SNDMORE)
            self.pub.send(data)
            self.ring.append(self.seq, data)
            self.metrics.latencies[f"{event.source}.latency"].record_ns(publication.published_ns - event.ingest_ns)
        if admitted:
            counters["published"] += len(admitted)
            self.last_sent_ns = time.monotonic_ns()
            self.memory.remember([event.id for event in admitted], self.seq)

    def _heartbeat(self) -> None:
        if self.trim_at and time.monotonic() >= self.trim_at:
            self.trim_at = 0.0
            release_memory()
        if time.monotonic_ns() - self.last_reconfirm_ns >= HEARTBEAT_NS:
            self._reconfirm()
            self.last_reconfirm_ns = time.monotonic_ns()
        if time.monotonic_ns() - self.last_sent_ns >= self.config.aggregator.heartbeat_s * 1e9:
            self._send_heartbeat()

    def _send_heartbeat(self, final: bool = False) -> None:
        beat = Heartbeat(self.seq, self.epoch, time.time_ns(), stopping=self.stopping, final=final)
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
        left = False
        while self.monitor.poll(0):
            event, _ = monitor_event(self.monitor)
            joined = event == zmq.EVENT_ACCEPTED
            self.subscribers += 1 if joined else -1
            left = left or not joined
        self.metrics.gauges["subscribers"] = float(max(0, self.subscribers))
        if left:  # libzmq frees a gone subscriber's queue in its own thread: give the memory back after
            self.trim_at = time.monotonic() + TRIM_DELAY_S

    def _answer_replay(self) -> None:
        try:
            frames, peer = recv_frames(self.replay)
        except zmq.Again:
            return
        identity, *_ = frames  # ROUTER: the identity, a REQ's or DEALER's delimiter, the request
        request = decode_single(replay_request_decoder, [f for f in frames[1:] if f])
        if isinstance(request, Rejection):
            reject(self.metrics, "replay", request, peer)
            reply = encoder.encode({"type": "error", "error": f"{request.reason}: {request.detail}"})
        else:
            reply = encoder.encode(self.ring.answer(request))
            if request.missed:  # a subscriber saw a gap: what PUB dropped for it (it was too slow)
                self.metrics.count("subscribers.gaps")
                self.metrics.count("subscribers.missed", request.missed)
        self.metrics.count("replay.requests")
        self.replay.send_multipart([identity, b"", reply])

    # -- config and stopping -----------------------------------------------------------
    def _apply_config(self) -> None:
        new = self.bus.receive(self.config)
        if new is None:
            return
        self.config = new
        self.dedup.configure(new.aggregator)
        self.ring.resize(new.aggregator.replay_size, new.aggregator.replay_max_bytes)
        log.info("applied config version %d", self.bus.version)
        self.bus.report(force=True)

    def close(self) -> None:
        self._send_heartbeat(final=True)  # the epoch's last message: followers stop once they have `seq`
        self.memory.close()
        self.bus.report(force=True)
        self.pub.disable_monitor()
        for sock in (self.monitor, self.pull, self.pub, self.replay, *self.acks):
            sock.close(linger=500)
        self.bus.close()


def main(argv: list[str] | None = None) -> int:
    p = mesh_parser("tickmesh-aggregator", "Deduplicate, order and publish the workers' events.")
    p.add_argument("--publish", help="PUB endpoint to bind (default from config)")
    args = p.parse_args(argv)
    config = start(args, "aggregator")
    if config is None:
        return 2
    config = with_endpoints(config, publish=args.publish)
    sched.apply(config, "aggregator")
    return serve(config, "aggregator", lambda ctx, stop: Aggregator(config, ctx, stop).run(), args.health)
