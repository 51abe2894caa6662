"""A local websocket server speaking the Polygon protocol, scripted per connection (for tests and demos).

Each connection: `connected` status → wait for auth → `auth_success` (or `auth_failed`
and close) → wait for subscribe → `success` → send its slice of the frames → then
close, go silent, or keep streaming, as its Plan says.

    python -m tests.polygon_server --port 8765 tests/data/polygon_session.jsonl
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve


def status(name: str, message: str) -> str:
    return json.dumps([{"ev": "status", "status": name, "message": message}])


@dataclass(frozen=True)
class Plan:
    """What one connection does after the handshake: send frames[start:stop], then `then`."""

    start: int = 0
    stop: int | None = None
    then: Literal["close", "silent", "hold"] = "hold"  # hold: keep the connection open, quietly


@dataclass
class PolygonServer:
    """Serves `frames` to connections following `plans` (the last plan repeats)."""

    frames: list[str]
    plans: list[Plan] = field(default_factory=lambda: [Plan()])
    key: str = "test-key"
    interval_s: float = 0.0  # pause between frames
    connections: int = 0
    auths: list[str] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    _server: Server | None = None
    _thread: threading.Thread | None = None
    _closing: threading.Event = field(default_factory=threading.Event)

    def start(self, port: int = 0) -> PolygonServer:
        self._server = serve(self._handle, "127.0.0.1", port, compression=None)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"

    def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(5)

    def _handle(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        plan = self.plans[min(index, len(self.plans) - 1)]
        try:
            ws.send(status("connected", "Connected Successfully"))
            auth = json.loads(ws.recv(timeout=10))
            self.auths.append(str(auth.get("params")))
            if auth.get("action") != "auth" or auth.get("params") != self.key:
                ws.send(status("auth_failed", "authentication failed"))
                ws.close()
                return
            ws.send(status("auth_success", "authenticated"))
            subscribe = json.loads(ws.recv(timeout=10))
            self.subscriptions.append(str(subscribe.get("params")))
            ws.send(status("success", f"subscribed to: {subscribe.get('params')}"))
            for text in self.frames[plan.start : plan.stop]:
                ws.send(text)
                if self.interval_s:
                    time.sleep(self.interval_s)
            if plan.then == "close":
                ws.close()
                return
            while not self._closing.is_set():  # silent or holding: wait for the client to leave
                try:
                    ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
        except (ConnectionClosed, TimeoutError, OSError, ValueError):
            return


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("frames", help="a JSON lines file of frames (status frames in it are skipped)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--key", default="test-key")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between frames")
    args = p.parse_args()
    with open(args.frames, encoding="utf-8") as f:
        frames = [line.strip() for line in f if line.strip() and '"status"' not in line]
    server = PolygonServer(frames, key=args.key, interval_s=args.interval).start(args.port)
    print(f"serving {len(frames)} frames at {server.url} (key {args.key!r}); Ctrl-C stops")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
