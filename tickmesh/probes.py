"""The HTTP server behind tickmesh/health.py's probes: `GET /livez` and `GET /readyz`, from a Health."""

from __future__ import annotations

import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tickmesh.health import Health

log = logging.getLogger("tickmesh.health")


class _Handler(BaseHTTPRequestHandler):
    server: ProbeServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        checks = {"/livez": self.server.health.live, "/readyz": self.server.health.readiness}
        check = checks.get(self.path.split("?", 1)[0])
        if check is None:
            self._reply(404, "not found: GET /livez or /readyz\n")
            return
        ok, why = check()
        self._reply(200 if ok else 503, why + "\n")

    def _reply(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        log.debug("probe %s", format % args)


class ProbeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], health: Health) -> None:
        self.health = health
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
