"""The HTTP and websocket side: static page files, one websocket per browser, its messages in and out."""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from web.fanout import Fanout, Message, Outbox
from web.mesh import ACTIONS, MeshView
from web.tape import Tape

log = logging.getLogger(__name__)

STATIC = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
          "/style.css": ("style.css", "text/css")}  # fmt: skip
CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'"
HISTORY_LIMIT = 200  # a ticker's recent events, from the journal if there is one, else the ring
MAX_MESSAGE_BYTES = 64 * 1024  # what a browser sends is small: a token, an action, a ticker
json_encode = msgspec.json.Encoder().encode


def load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("web") / "static"
    return {path: ((folder / name).read_bytes(), ctype) for path, (name, ctype) in STATIC.items()}


def response(status: int, reason: str, body: bytes, ctype: str) -> Response:
    headers = Headers([
        ("Content-Type", f"{ctype}; charset=utf-8"), ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"), ("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
        ("Connection", "close"),
    ])  # fmt: skip
    return Response(status, reason, headers, body)


def given_token(headers: Headers) -> str:
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@dataclass
class WebServer:
    """Serves the page and streams to each browser through its own bounded outbox."""

    fanout: Fanout
    mesh: MeshView
    tape: Tape
    token: str | None  # the admin token: required for every read when `guarded` (off loopback)
    guarded: bool
    static: dict[str, tuple[bytes, str]] = field(default_factory=load_static)
    rejected: int = 0  # browser messages refused (malformed, unknown, unauthorized)

    def authorized(self, token: str) -> bool:
        return bool(self.token and token) and hmac.compare_digest(token.encode(), (self.token or "").encode())

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if request.headers.get("Upgrade", "").lower() == "websocket" and path == "/stream":
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != request.headers.get("Host"):
                return response(403, "Forbidden", b"cross-origin websocket refused\n", "text/plain")
            return None
        if path == "/api/stats":
            if self.guarded and not self.authorized(given_token(request.headers)):
                return response(401, "Unauthorized", b"this view needs the admin token\n", "text/plain")
            stats = {"connections": self.fanout.stats(), "received": self.tape.received, "rejected": self.rejected}
            return response(200, "OK", json_encode(stats), "application/json")
        if path in self.static:
            body, ctype = self.static[path]
            return response(200, "OK", body, ctype)
        return response(404, "Not Found", b"not found\n", "text/plain")

    async def handle(self, ws: ServerConnection) -> None:
        outbox: Outbox | None = None if self.guarded else self.fanout.join()
        sender = asyncio.create_task(self.send(ws, outbox)) if outbox else None
        try:
            if outbox is None:
                await self.reply(ws, outbox, {"type": "locked"})
            async for raw in ws:
                message = self.parse(raw)
                if message is None:
                    await self.reply(ws, outbox, {"type": "error", "error": "malformed message"})
                    continue
                if outbox is None:  # guarded: the first message must be a hello with the token
                    if message.get("type") != "hello" or not self.authorized(str(message.get("token", ""))):
                        self.rejected += 1
                        await ws.close(4401, "the admin token is required")
                        return
                    outbox = self.fanout.join()
                    sender = asyncio.create_task(self.send(ws, outbox))
                    continue
                reply = await self.answer(message)
                if reply is not None:
                    outbox.put_reply(reply)
        except ConnectionClosed:
            pass
        finally:
            if sender is not None:
                sender.cancel()
            if outbox is not None:
                self.fanout.leave(outbox)

    @staticmethod
    async def reply(ws: ServerConnection, outbox: Outbox | None, message: Message) -> None:
        """Through the outbox once the browser reads (one sender per socket), else directly, as text."""
        if outbox is not None:
            outbox.put_reply(message)
        else:
            await ws.send(json_encode(message).decode())

    async def send(self, ws: ServerConnection, outbox: Outbox) -> None:
        outbox.put_reply({"type": "hello", "recent": self.tape.recent(), "guarded": self.guarded})
        try:
            while True:
                await outbox.ready.wait()
                for message in outbox.take():
                    await ws.send(json_encode(message).decode())
        except ConnectionClosed:
            pass

    def parse(self, raw: str | bytes) -> dict[str, Any] | None:
        try:
            message = msgspec.json.decode(raw if isinstance(raw, bytes) else raw.encode())
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            message = None
        if not isinstance(message, dict):
            self.rejected += 1
            log.warning("a malformed message from a browser (counted: %d)", self.rejected)
            return None
        return message

    async def answer(self, message: dict[str, Any]) -> Message | None:
        kind = message.get("type")
        token = str(message.get("token", ""))
        if kind == "hello":  # already reading (the token is checked here only off loopback)
            return None
        if kind == "history":
            ticker = str(message.get("ticker", ""))[:32]
            journaled = await self.mesh.journal(ticker, HISTORY_LIMIT) if ticker else None
            if journaled is not None:
                return {"type": "history", "ticker": ticker, "source": "journal", "events": journaled}
            recent = self.tape.recent(ticker, HISTORY_LIMIT)
            return {"type": "history", "ticker": ticker, "source": "ring", "events": recent}
        if kind == "login":
            return await self.mesh.login(token)
        action, channel = message.get("action"), str(message.get("channel", ""))
        if kind == "action" and action in ACTIONS and token:
            changes = message.get("changes") or {}
            if isinstance(changes, dict):
                return await self.mesh.act(token, str(action), channel, {str(k): str(v) for k, v in changes.items()})
        self.rejected += 1
        return {"type": "error", "error": f"refused: {kind!r} (an action needs the admin token)"}
