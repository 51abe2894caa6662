"""The mesh view's source: control's gRPC API polled for metrics and channels; operator actions forwarded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc
from grpc import aio

from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Message = dict[str, Any]
CALL_TIMEOUT_S = 5.0
ACTIONS = ("pause", "resume", "set")
RATE_WINDOW_S = 5.0


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def channel_config(ch: pb.Channel) -> Message:
    return {
        "name": ch.name, "data_type": ch.data_type, "priority": ch.priority, "batch_size": ch.batch_size,
        "timeout_ms": ch.timeout_ms, "paused": ch.paused, "shards": ch.shards, "overflow": ch.overflow,
        "hwm": ch.hwm, "buffer": ch.buffer, "rules": dict(sorted(ch.rules.items())),
        "config_version": ch.config_version,
    }  # fmt: skip


def channel_metrics(ch: pb.ChannelMetrics) -> Message:
    return {
        "channel": ch.channel, "received": ch.received, "routed": ch.routed, "processed": ch.processed,
        "rejected": ch.rejected_total, "conflated": ch.conflated, "paused_dropped": ch.paused_dropped,
        "queue": ch.queue_depth, "events": ch.events_total,
        "p50_us": ch.latency_p50_us, "p99_us": ch.latency_p99_us,
    }  # fmt: skip


def process_row(p: pb.ProcessInfo) -> Message:
    return {
        "process": p.process, "role": p.role, "host": p.host, "pid": p.pid, "rss_bytes": p.rss_bytes,
        "cpu_percent": p.cpu_percent, "config_version": p.config_version, "heartbeat_age_s": p.heartbeat_age_s,
        "live": p.live, "software": p.software,
    }  # fmt: skip


def journal_row(event: pb.JournalEvent) -> Message:
    """A journaled event as the tape shows a live one (web.tape.event_row)."""
    row: Message = json.loads(event.fields_json)
    row.update(kind=event.kind, seq=event.seq, epoch=event.epoch, published_ns=event.published_ns)
    ingest = row.get("ingest_ns")
    row["latency_us"] = (event.published_ns - ingest) / 1_000 if isinstance(ingest, int) and ingest else None
    return row


class History:
    """Per channel: the last `seconds` of (time, events/s, p50, p99), for the cards' charts. Events/s
    is the processed count's rise over the last RATE_WINDOW_S, so one quiet poll does not read as zero."""

    def __init__(self, seconds: float, interval_s: float) -> None:
        self.points: dict[str, deque[list[float]]] = {}
        self.size = max(2, int(seconds / interval_s))
        self.counts: dict[str, deque[tuple[float, int]]] = {}

    def add(self, now: float, channels: list[Message]) -> None:
        for ch in channels:
            name = ch["channel"]
            counts = self.counts.setdefault(name, deque())
            if counts and ch["processed"] < counts[-1][1]:
                counts.clear()  # a restarted control starts its sums again
            counts.append((now, ch["processed"]))
            while len(counts) > 2 and now - counts[1][0] >= RATE_WINDOW_S:
                counts.popleft()
            then, before = counts[0]
            ch["rate"] = (ch["processed"] - before) / (now - then) if now > then else 0.0
            points = self.points.setdefault(name, deque(maxlen=self.size))
            points.append([round(now, 3), round(ch["rate"], 1), ch["p50_us"], ch["p99_us"]])

    def of(self, name: str) -> list[list[float]]:
        return list(self.points.get(name, ()))


class MeshView:
    """Polls control every `interval_s` with the web process's own token; publishes one snapshot."""

    def __init__(
        self, target: str, token: Callable[[], str | None], interval_s: float, history_s: float, ca: bytes | None = None
    ) -> None:
        self.target, self.token_source, self.interval_s = target, token, interval_s
        self.ca = ca  # control's TLS certificate (or its CA's), as tickmesh-admin trusts it; None: plaintext
        self.token: str | None = None
        self.history = History(history_s, interval_s)
        self.channel: aio.Channel | None = None
        self.stub: pb_grpc.ControlStub | None = None

    def open(self) -> None:
        """Made inside the running loop (grpc.aio channels belong to the loop that made them)."""
        if self.ca is None:
            self.channel = aio.insecure_channel(self.target)
        else:
            self.channel = aio.secure_channel(self.target, grpc.ssl_channel_credentials(root_certificates=self.ca))
        self.stub = pb_grpc.ControlStub(self.channel)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()

    async def run(self, publish: Callable[[Message], None], stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            publish(await self.snapshot())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)

    async def snapshot(self) -> Message:
        self.token = self.token or self.token_source()  # control may write its token file after we start
        if not self.token:
            return {"type": "mesh", "error": "no admin token for the web process: set TICKMESH_ADMIN_TOKEN "
                    "or run where control wrote its token file"}  # fmt: skip
        assert self.stub is not None
        md = bearer(self.token)
        try:
            metrics = await self.stub.GetMetrics(pb.GetMetricsRequest(), metadata=md, timeout=CALL_TIMEOUT_S)
            channels = await self.stub.ListChannels(pb.ListChannelsRequest(), metadata=md, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            return {"type": "mesh", "error": f"control at {self.target}: {describe(exc)}"}
        rows = [channel_metrics(ch) for ch in metrics.channels]
        self.history.add(time.monotonic(), rows)
        for row in rows:
            row["history"] = self.history.of(row["channel"])
        return {
            "type": "mesh", "time_ns": metrics.time_ns, "config_version": channels.config_version,
            "channels": rows, "config": [channel_config(ch) for ch in channels.channels],
            "processes": [process_row(p) for p in metrics.processes],
            "published": metrics.aggregator.published, "subscribers": metrics.aggregator.subscribers,
        }  # fmt: skip

    async def journal(self, ticker: str, limit: int) -> list[Message] | None:
        """The ticker's newest `limit` events from the journal (QueryEvents), oldest first; None when control
        has no journal to read (or cannot be asked), so the caller falls back to its own ring."""
        if not self.token or self.stub is None:
            return None
        request = pb.QueryEventsRequest(tickers=[ticker], newest_first=True, limit=limit)
        try:
            call = self.stub.QueryEvents(request, metadata=bearer(self.token), timeout=CALL_TIMEOUT_S)
            rows = [journal_row(event) async for event in call]
        except grpc.RpcError as exc:
            log.debug("no journal history for %s: %s", ticker, describe(exc))
            return None
        return rows[::-1]

    async def login(self, token: str) -> Message:
        """Whether control accepts `token` (the page shows its actions only then)."""
        assert self.stub is not None
        try:
            await self.stub.ListChannels(pb.ListChannelsRequest(), metadata=bearer(token), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            return {"type": "login", "ok": False, "error": describe(exc)}
        return {"type": "login", "ok": True}

    async def act(self, token: str, action: str, channel: str, changes: dict[str, str]) -> Message:
        """One operator action, forwarded with the browser's token: control decides whether it is allowed."""
        assert self.stub is not None
        md, t = bearer(token), CALL_TIMEOUT_S
        try:
            if action == "pause":
                reply = await self.stub.PauseChannel(pb.ChannelRequest(channel=channel), metadata=md, timeout=t)
            elif action == "resume":
                reply = await self.stub.ResumeChannel(pb.ChannelRequest(channel=channel), metadata=md, timeout=t)
            else:
                request = pb.UpdateChannelRequest(channel=channel, changes=changes)
                reply = await self.stub.UpdateChannel(request, metadata=md, timeout=t)
        except grpc.RpcError as exc:
            return {"type": "ack", "ok": False, "action": action, "channel": channel, "error": describe(exc)}
        return {
            "type": "ack", "ok": True, "action": action, "channel": channel, "changed": reply.changed,
            "config_version": reply.config_version, "acked": list(reply.acked),
            "config": channel_config(reply.channel),
        }  # fmt: skip


def describe(exc: grpc.RpcError) -> str:
    code, details = exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    return f"{code.name.lower().replace('_', ' ')}: {details}"
