"""The tickmesh.control.v1.Control servicer: the admin API over the hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping

import grpc
from grpc import aio

from control.convert import channel_message, snapshot_message
from control.hub import AckTimeout, Hub
from control.state import FixedFieldError
from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc
from journal.backends import query_once
from journal.query import EventQuery, QueryError, build_query, page_token
from journal.store import StoredEvent, StoreError
from tickmesh.config import CHANNELS, Config, ConfigError

WATCH_MIN_S, WATCH_MAX_S = 0.1, 3_600.0
MAX_CHANGES = 64


class ControlServicer(pb_grpc.ControlServicer):
    """Every RPC runs in the event loop, next to the bus sockets it reads through the hub."""

    def __init__(self, hub: Hub, stopping: asyncio.Event, config: Config, env: Mapping[str, str]) -> None:
        self.hub = hub
        self.stopping = stopping
        self.config, self.env = config, dict(env)  # where the journal is, for QueryEvents

    def _channel(self, name: str) -> pb.Channel:
        state = self.hub.state
        return channel_message(state.config, name, state.channel_versions[name])

    async def ListChannels(
        self, request: pb.ListChannelsRequest, context: aio.ServicerContext
    ) -> pb.ListChannelsResponse:
        return pb.ListChannelsResponse(
            config_version=self.hub.state.version, channels=[self._channel(ch) for ch in CHANNELS]
        )

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: aio.ServicerContext) -> pb.MetricsSnapshot:
        await _check_channel(request.channel, context, optional=True)
        return snapshot_message(self.hub.view(request.channel or None))

    async def WatchMetrics(
        self, request: pb.WatchMetricsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.MetricsSnapshot]:
        await _check_channel(request.channel, context, optional=True)
        interval = request.interval_s or 1.0
        if not WATCH_MIN_S <= interval <= WATCH_MAX_S:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"interval_s must be {WATCH_MIN_S:g}..{WATCH_MAX_S:g} seconds, got {interval:g}",
            )
        while not self.stopping.is_set():
            yield snapshot_message(self.hub.view(request.channel or None))
            with contextlib.suppress(TimeoutError):  # wakes at once when the server stops
                await asyncio.wait_for(self.stopping.wait(), interval)

    async def UpdateChannel(
        self, request: pb.UpdateChannelRequest, context: aio.ServicerContext
    ) -> pb.UpdateChannelResponse:
        if not request.changes:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no changes given (key=value)")
        if len(request.changes) > MAX_CHANGES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_CHANGES} changes at once")
        return await self._change(request.channel, dict(request.changes), context)

    async def PauseChannel(self, request: pb.ChannelRequest, context: aio.ServicerContext) -> pb.UpdateChannelResponse:
        return await self._change(request.channel, {"paused": True}, context)

    async def ResumeChannel(self, request: pb.ChannelRequest, context: aio.ServicerContext) -> pb.UpdateChannelResponse:
        return await self._change(request.channel, {"paused": False}, context)

    async def _change(
        self, channel: str, changes: Mapping[str, object], context: aio.ServicerContext
    ) -> pb.UpdateChannelResponse:
        await _check_channel(channel, context, optional=False)
        try:
            version, acked, changed = await self.hub.change(channel, changes)
        except (ConfigError, FixedFieldError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except AckTimeout as exc:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        return pb.UpdateChannelResponse(
            channel=self._channel(channel), config_version=version, acked=acked, changed=changed
        )

    async def QueryEvents(
        self, request: pb.QueryEventsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.JournalEvent]:
        try:
            query = build_query(
                tickers=request.tickers, kinds=request.kinds, sources=request.sources, since=request.since or None,
                until=request.until or None, seq_from=_optional(request, "seq_from"),
                seq_to=_optional(request, "seq_to"), epoch=_optional(request, "epoch"),
                run=request.run if request.HasField("run") else None, newest_first=request.newest_first,
                limit=request.limit or 100, offset=request.offset, page_token=request.page_token or None,
            )  # fmt: skip
        except QueryError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:  # the database call runs in a thread: the event loop keeps serving the bus
            rows = await asyncio.to_thread(query_once, self.config, self.env, query)
        except StoreError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except Exception as exc:  # the database is down or refused the query
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"journal database error: {exc}"[:500])
        for row in rows:
            yield _journal_event(row, query)


def _optional(request: pb.QueryEventsRequest, field: str) -> int | None:
    return int(getattr(request, field)) if request.HasField(field) else None


def _journal_event(row: StoredEvent, query: EventQuery) -> pb.JournalEvent:
    return pb.JournalEvent(
        id=row.id, kind=row.kind, ticker=row.ticker, source=row.source, priority=row.priority, time_ns=row.time,
        price=row.price, epoch=row.epoch, seq=row.seq, published_ns=row.published_ns, run=row.run,
        fields_json=json.dumps(row.as_dict()), page_token=page_token(query, row.key(query)),
    )  # fmt: skip


async def _check_channel(name: str, context: aio.ServicerContext, *, optional: bool) -> None:
    if (optional and not name) or name in CHANNELS:
        return
    if not name:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a channel name is required")
    await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown channel {name[:64]!r} (channels: {', '.join(CHANNELS)})")
