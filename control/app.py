"""tickmesh-control: the gRPC admin API, the control bus and the Prometheus endpoint in one event loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from control import prometheus
from control.auth import TokenError, TokenInterceptor, server_token
from control.hub import Hub
from control.service import ControlServicer
from control.v1 import control_pb2, control_pb2_grpc
from tickmesh.cli import EXIT_AUTH, EXIT_ENDPOINT, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from tickmesh.config import Config, ConfigError, load_config, with_endpoints
from tickmesh.curve import secure_context
from tickmesh.durable import Held, hold
from tickmesh.health import Health, start_probes, stop_probes
from tickmesh.runtime import STOP_SIGNALS, LoopSignals, endpoint_exit, ignore_stop_signals, mesh_parser, start
from tickmesh.security import is_loopback
from tickmesh.sockets import EndpointError

log = logging.getLogger(__name__)
SERVICE = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name
MESH_SERVICE = "tickmesh.mesh"  # the health service an orchestrator probes for the data path
HEALTH_CHECK_S = 0.5


def data_path(config: Config) -> frozenset[str]:
    """The processes the mesh's health needs reporting: every router (`[router] count`) and the aggregator."""
    return frozenset({"aggregator", "router", *(f"router.{i}" for i in range(1, config.router.count))})


class StartError(RuntimeError):
    """The control process cannot start: the message says why, `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def split_hostport(address: str) -> tuple[str, int]:
    """("127.0.0.1", 9108) for "127.0.0.1:9108"; IPv6 in brackets ("[::1]:9108")."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise StartError(f"{address!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _credentials(config: Config) -> grpc.ServerCredentials | None:
    cert, key = config.control.tls_cert, config.control.tls_key
    if not cert and not key:
        return None
    if not (cert and key):
        raise StartError("control.tls_cert and control.tls_key must be set together")
    try:
        return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])
    except OSError as exc:
        raise StartError(f"cannot read TLS cert/key: {exc}") from None


async def _grpc_server(
    hub: Hub, stopping: asyncio.Event, config: Config, token: str
) -> tuple[aio.Server, health.aio.HealthServicer]:
    server = aio.server(interceptors=[TokenInterceptor(token)])
    control_pb2_grpc.add_ControlServicer_to_server(ControlServicer(hub, stopping, config, os.environ), server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    names = (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    address = config.endpoints.grpc
    creds = _credentials(config)
    if creds is None and not is_loopback(split_hostport(address)[0]):
        raise StartError(f"gRPC on {address} is off loopback: set control.tls_cert and tls_key (docs/deploy.md)")
    try:
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise StartError(f"cannot bind gRPC {address}: {exc}", EXIT_ENDPOINT) from None
    await server.start()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    await checks.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    host = address.rpartition(":")[0] or address
    log.info("gRPC listening on %s:%d (%s)", host, port, "TLS" if creds else "plaintext")
    return server, checks


def _start_prometheus(hub: Hub, address: str) -> Any:
    if address in ("", "off"):
        return None
    host, port = split_hostport(address)
    loop = asyncio.get_running_loop()

    async def fresh_view() -> Any:
        return hub.view()

    def view() -> Any:  # called in the HTTP server's thread: the state is read in the loop
        return asyncio.run_coroutine_threadsafe(fresh_view(), loop).result(timeout=5)

    try:
        httpd, _ = start_http_server(port, host, registry=prometheus.registry(view))
    except OSError as exc:
        raise StartError(f"cannot bind Prometheus {address}: {exc.strerror}", EXIT_ENDPOINT) from None
    log.info("Prometheus metrics on http://%s:%d/metrics", host, httpd.server_port)
    return httpd


async def _reload(hub: Hub, reread: Callable[[], Config]) -> None:
    """SIGHUP: read the config file again; a bad one is reported and the live config kept."""
    try:
        file_config = reread()
    except ConfigError as exc:
        log.error("SIGHUP: config file not applied: %s", exc)
        return
    await hub.reload(file_config)


async def _watch_mesh(hub: Hub, checks: health.aio.HealthServicer, probes: Health) -> None:
    """The gRPC health of MESH_SERVICE: SERVING while every router and the aggregator report (they are
    the data path), NOT_SERVING from the moment one falls silent (or before all have reported).
    Each turn is also the event loop's liveness stamp for --health's /livez."""
    serving: bool | None = None
    while True:
        probes.turn()
        live = {p.process for p in hub.state.processes(time.time_ns()) if p.live}
        needed = data_path(hub.state.config)
        now_serving = live >= needed
        if now_serving != serving:
            status = (
                health_pb2.HealthCheckResponse.SERVING if now_serving else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await checks.set(MESH_SERVICE, status)
            if serving is not None or now_serving:
                log.log(logging.INFO if now_serving else logging.WARNING, "mesh health: %s (live: %s)",
                        "SERVING" if now_serving else f"NOT_SERVING, {', '.join(sorted(needed - live))} silent",
                        ", ".join(sorted(live & needed)) or "none")  # fmt: skip
            serving = now_serving
        await asyncio.sleep(HEALTH_CHECK_S)


def _task_ended(task: asyncio.Task[None], failed: list[str], stopping: asyncio.Event) -> None:
    """A bus task must not die quietly while the API serves stale data: stop the process instead."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("%s failed: %r; stopping", task.get_name(), task.exception())
    failed.append(task.get_name())
    stopping.set()


async def serve(
    config: Config, token: str, reread: Callable[[], Config] | None = None, health_address: str | None = None
) -> int:
    """Run until SIGTERM/SIGINT (0) or until a bus task fails (1); SIGHUP applies `reread()`'s config;
    /livez and /readyz on `health_address` (ready once the gRPC API serves and the bus tasks run)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = LoopSignals(loop)
    for sig in STOP_SIGNALS:
        signals.on(sig, stopping.set)
    ctx = secure_context(config, "control", asyncio=True)
    hub, server, httpd, prober, probes = None, None, None, None, Health()
    try:
        prober = start_probes(health_address, probes) if health_address else None
        hub = Hub(ctx, config)
        if reread is not None:
            signals.on(signal.SIGHUP, lambda: loop.create_task(_reload(hub, reread)))
        log.info(
            "control bus: config PUB %s, status PULL %s",
            config.endpoints.control_config,
            config.endpoints.control_status,
        )
        failed: list[str] = []
        tasks = [asyncio.create_task(hub.run_status(), name="status intake"),
                 asyncio.create_task(hub.run_publisher(), name="config publisher")]  # fmt: skip
        for task in tasks:
            task.add_done_callback(lambda t: _task_ended(t, failed, stopping))
        server, checks = await _grpc_server(hub, stopping, config, token)
        tasks.append(asyncio.create_task(_watch_mesh(hub, checks, probes), name="mesh health"))
        tasks[-1].add_done_callback(lambda t: _task_ended(t, failed, stopping))
        httpd = _start_prometheus(hub, config.endpoints.prometheus)
        probes.ready()
        await stopping.wait()
        ignore_stop_signals()  # more stop signals change nothing
        probes.ready("stopping")
        log.info("stopping")
        await checks.enter_graceful_shutdown()
        await server.stop(config.process.stop_budget(3.0))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return EXIT_FAILURE if failed else EXIT_OK
    finally:
        stop_probes(prober)
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if server is not None:
            await server.stop(None)
        if hub is not None:
            hub.close()
        ctx.term()


def build_parser() -> argparse.ArgumentParser:
    p = mesh_parser("tickmesh-control", "The tickmesh control plane: gRPC admin API, control bus, Prometheus.")
    p.add_argument("--grpc", metavar="HOST:PORT", help="gRPC address (default: endpoints.grpc); port 0 picks one")
    p.add_argument(
        "--prometheus", metavar="HOST:PORT", help="metrics HTTP address, or `off` (default: endpoints.prometheus)"
    )
    p.add_argument(
        "--control-config", metavar="ENDPOINT", help="config PUB endpoint (default: endpoints.control_config)"
    )
    p.add_argument(
        "--control-status", metavar="ENDPOINT", help="status PULL endpoint (default: endpoints.control_status)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = start(args, "control")
    if config is None:
        return EXIT_USAGE
    config = with_endpoints(
        config,
        grpc=args.grpc,
        prometheus=args.prometheus,
        control_config=args.control_config,
        control_status=args.control_status,
    )
    try:
        lock = hold(Path(config.state.dir) / "control.lock", "a control process")
    except Held as exc:
        log.error("%s", exc)
        return endpoint_exit(exc)
    try:
        token, where, created = server_token(os.environ, config.control.token_file)
        if created:
            log.info("admin token created in %s (mode 0600); tickmesh-admin reads it from there", where)
        else:
            log.info("admin token from %s", where)
        return asyncio.run(serve(config, token, lambda: load_config(args.config), args.health))
    except StartError as exc:
        log.error("%s", exc)
        return exc.code
    except TokenError as exc:
        log.error("%s", exc)
        return EXIT_AUTH
    except EndpointError as exc:
        log.error("%s", exc)
        return endpoint_exit(exc)
    except KeyboardInterrupt:  # a signal before the loop installed its handlers
        return 0
    finally:
        lock.close()
