"""tickmesh-web's server in-process with real sockets: a browser that never reads, and what is refused."""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import zmq
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from web.fanout import Fanout
from web.mesh import MeshView
from web.server import WebServer
from web.tape import Tape

TOKEN = "web-server-token-0123456789"
PAD_BYTES = 1_000  # large, random (incompressible: permessage-deflate is on) events fill the socket buffers sooner


@asynccontextmanager
async def running(capacity: int, guarded: bool = False) -> AsyncIterator[tuple[WebServer, str]]:
    """The real WebServer on a free loopback port (its tape and mesh sources left idle)."""
    ctx: zmq.Context = zmq.Context()  # type: ignore[type-arg]
    fanout = Fanout(capacity)
    tape = Tape(ctx, "ipc:///nonexistent/publish", "ipc:///nonexistent/replay", 10, fanout.publish_events,
                asyncio.get_running_loop())  # fmt: skip
    web = WebServer(fanout, MeshView("127.0.0.1:1", lambda: None, 1.0, 60.0), tape, TOKEN, guarded)
    server = await serve(web.handle, "127.0.0.1", 0, process_request=web.process_request)
    port = server.sockets[0].getsockname()[1]
    try:
        yield web, f"127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
        ctx.term()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(2_000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_browser_that_never_reads_gets_a_bounded_queue_a_drop_count_and_a_marker() -> None:
    async def scenario() -> None:
        async with running(capacity=100) as (web, address):
            client = await connect(f"ws://{address}/stream", max_queue=1)  # reads one frame, then stalls
            await until(lambda: len(web.fanout.outboxes) == 1, "the browser to join")
            outbox = next(iter(web.fanout.outboxes))
            published = 0
            while not outbox.dropped_total:  # the socket and its buffers fill, then the outbox, then drops
                assert published < 500_000, "nothing was ever dropped"
                batch = [{"seq": published + i, "pad": secrets.token_hex(PAD_BYTES)} for i in range(100)]
                web.fanout.publish_events(batch)
                published += 100
                assert len(outbox.events) <= 100
                await asyncio.sleep(0.002)
            assert outbox.stats()["queued"] <= 100 and outbox.stats()["dropped"] == outbox.dropped_total
            received, markers = await read_all(client, published)
            assert received + sum(markers) == published and sum(markers) == outbox.dropped_total
            await client.close()

    run(scenario)


async def read_all(client: ClientConnection, published: int) -> tuple[int, list[int]]:
    """Events and drop markers read until every published event is accounted for."""
    received, markers = 0, list[int]()
    while received + sum(markers) < published:
        message = json.loads(await asyncio.wait_for(client.recv(), 10))
        if message["type"] == "events":
            received += len(message["events"])
        elif message["type"] == "dropped":
            markers.append(message["count"])
    return received, markers


def test_malformed_messages_and_actions_without_a_token_are_refused_and_counted() -> None:
    async def scenario() -> None:
        async with running(capacity=100) as (web, address), connect(f"ws://{address}/stream") as client:
            for bad in ("not json", "[1, 2]", json.dumps({"type": "action", "action": "pause", "channel": "tick"})):
                await client.send(bad)
            replies: list[str] = []
            while len(replies) < 3:
                message = json.loads(await asyncio.wait_for(client.recv(), 10))
                if message["type"] == "error":
                    replies.append(message["error"])
            assert replies[:2] == ["malformed message"] * 2 and replies[2].startswith("refused")
            assert web.rejected == 3

    run(scenario)


def test_without_a_journal_a_tickers_history_comes_from_the_ring() -> None:
    async def scenario() -> None:
        async with running(capacity=100) as (web, address), connect(f"ws://{address}/stream") as client:
            web.tape.ring.extend(
                [{"ticker": "AAPL", "seq": 1}, {"ticker": "MSFT", "seq": 2}, {"ticker": "AAPL", "seq": 3}]
            )
            await client.send(json.dumps({"type": "history", "ticker": "AAPL"}))
            while (message := json.loads(await asyncio.wait_for(client.recv(), 10)))["type"] != "history":
                pass
            assert message["source"] == "ring" and [e["seq"] for e in message["events"]] == [1, 3]

    run(scenario)


def test_a_cross_origin_websocket_is_refused() -> None:
    async def scenario() -> None:
        async with running(capacity=100) as (_, address):
            with pytest.raises(InvalidStatus, match="403"):
                await connect(f"ws://{address}/stream", origin="http://evil.example")  # type: ignore[arg-type]

    run(scenario)


def test_off_loopback_every_read_needs_the_token() -> None:
    async def scenario() -> None:
        async with running(capacity=100, guarded=True) as (web, address):
            stats = f"http://{address}/api/stats"
            with pytest.raises(urllib.error.HTTPError, match="401"):
                await asyncio.to_thread(urllib.request.urlopen, stats, timeout=5)
            request = urllib.request.Request(stats, headers={"Authorization": f"Bearer {TOKEN}"})
            reply = await asyncio.to_thread(urllib.request.urlopen, request, timeout=5)
            assert json.loads(reply.read())["connections"] == []
            async with connect(f"ws://{address}/stream") as client:
                assert json.loads(await asyncio.wait_for(client.recv(), 10)) == {"type": "locked"}
                await client.send(json.dumps({"type": "hello", "token": "wrong"}))
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(client.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            async with connect(f"ws://{address}/stream") as client:
                assert json.loads(await asyncio.wait_for(client.recv(), 10)) == {"type": "locked"}
                await client.send(json.dumps({"type": "hello", "token": TOKEN}))
                assert json.loads(await asyncio.wait_for(client.recv(), 10))["type"] == "hello"
            assert web.rejected == 1

    run(scenario)
