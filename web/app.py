"""tickmesh-web: serve the live page; read events from the publish stream and the mesh from control."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
from websockets.asyncio.server import serve

from control.auth import TokenError, read_token
from tickmesh.cli import EXIT_AUTH, EXIT_ENDPOINT, EXIT_USAGE
from tickmesh.config import Config, WebConfig, with_endpoints
from tickmesh.curve import secure_context
from tickmesh.runtime import STOP_SIGNALS, LoopSignals, ignore_stop_signals, parser, start
from web.fanout import Fanout
from web.mesh import MeshView
from web.server import MAX_MESSAGE_BYTES, WebServer
from web.tape import Tape

log = logging.getLogger(__name__)
# A browser that stops reading (a stalled tab) cannot answer pings: it keeps its connection (and gets its
# "dropped" marker) for a pause of a minute or more; a dead peer is closed within PING_S + PING_TIMEOUT_S.
PING_S = 30.0
PING_TIMEOUT_S = 60.0
CLOSE_S = 1.0  # at stop, a browser that does not answer the closing handshake is cut after this


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def token_source(config: Config) -> Callable[[], str | None]:
    """Reads the admin token (TICKMESH_ADMIN_TOKEN, else control.token_file) when asked; None if there is none yet."""

    def read() -> str | None:
        try:
            found = read_token(os.environ, config.control.token_file)
        except TokenError as exc:
            log.warning("%s", exc)
            return None
        return found[0] if found else None

    return read


async def run(config: Config, token: str | None, guarded: bool, ca: bytes | None) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = LoopSignals(loop)
    for sig in STOP_SIGNALS:
        signals.on(sig, stopping.set)
    signals.on(signal.SIGHUP, lambda: log.warning("SIGHUP ignored: tickmesh-web has no live settings"))
    wc, ep = config.web, config.endpoints
    fanout = Fanout(wc.queue)
    ctx = secure_context(config, "subscriber")
    tape = Tape(ctx, ep.publish, ep.replay, wc.ring, fanout.publish_events, loop)
    mesh = MeshView(ep.grpc, token_source(config), wc.poll_s, wc.history_s, ca)
    mesh.open()
    web = WebServer(fanout, mesh, tape, token, guarded)
    host, port = split_listen(wc.listen)
    try:
        server = await serve(
            web.handle, host, port, process_request=web.process_request, max_size=MAX_MESSAGE_BYTES,
            server_header=None, ping_interval=PING_S, ping_timeout=PING_TIMEOUT_S, close_timeout=CLOSE_S,
        )  # fmt: skip
    except OSError as exc:
        log.error("cannot listen on %s: %s", wc.listen, exc.strerror)
        await mesh.close()
        ctx.destroy(linger=0)
        return EXIT_ENDPOINT
    tape.start()
    print(f"web: http://{wc.listen}", flush=True)
    poller = asyncio.create_task(mesh.run(fanout.publish_mesh, stopping))
    await stopping.wait()
    ignore_stop_signals()  # more stop signals change nothing
    poller.cancel()  # a call in flight to a control that is stopping too must not hold the stop up
    server.close()
    await server.wait_closed()
    with contextlib.suppress(asyncio.CancelledError):
        await poller
    await mesh.close()
    tape.stop()
    ctx.destroy(linger=0)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = parser("tickmesh-web", "A live web view of the events and of the mesh (docs/web.md).")
    p.add_argument("--listen", metavar="HOST:PORT", help="where to serve the page (default: web.listen)")
    p.add_argument("--publish", help="aggregator PUB endpoint (default from config)")
    p.add_argument("--replay", help="aggregator replay endpoint (default from config)")
    p.add_argument("--target", metavar="HOST:PORT", help="control's gRPC address (default: endpoints.grpc)")
    args = p.parse_args(argv)
    config = start(args, "web")
    if config is None:
        return EXIT_USAGE
    config = with_endpoints(config, publish=args.publish, replay=args.replay, grpc=args.target)
    if args.listen:
        try:
            listen = msgspec.convert({**msgspec.to_builtins(config.web), "listen": args.listen}, WebConfig)
        except msgspec.ValidationError as exc:
            print(f"web: --listen: {exc}", file=sys.stderr)
            return EXIT_USAGE
        config = msgspec.structs.replace(config, web=listen)
    try:
        found = read_token(os.environ, config.control.token_file)
    except TokenError as exc:
        print(f"web: {exc}", file=sys.stderr)
        return EXIT_AUTH
    token = found[0] if found else None
    ca = None
    if config.control.tls_cert:  # control serves TLS: trust its certificate, as tickmesh-admin does
        try:
            ca = Path(config.control.tls_cert).read_bytes()
        except OSError as exc:
            print(f"web: cannot read control.tls_cert {config.control.tls_cert}: {exc.strerror}", file=sys.stderr)
            return EXIT_AUTH
    logging.getLogger("websockets").setLevel(logging.WARNING)  # one line per page request is noise
    guarded = not is_loopback(split_listen(config.web.listen)[0])
    if guarded and token is None:
        print(f"web: {config.web.listen} is not loopback: it needs the admin token for every read, and none "
              "was found (TICKMESH_ADMIN_TOKEN or control.token_file)", file=sys.stderr)  # fmt: skip
        return EXIT_AUTH
    if guarded:
        log.warning("listening off loopback on %s: every page needs the admin token to read", config.web.listen)
    if token is None:
        log.warning("no admin token yet (TICKMESH_ADMIN_TOKEN or %s): the mesh view waits for it",
                    config.control.token_file)  # fmt: skip
    return asyncio.run(run(config, token, guarded, ca))
