"""tickmesh-admin: the command-line client of the control plane's gRPC API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console, RenderableType
from rich.live import Live

from control import tables
from control.auth import TokenError, read_token
from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc
from journal.cli import add_query_arguments, events_table
from tickmesh.cli import EXIT_AUTH, EXIT_ENDPOINT, EXIT_FAILURE, EXIT_USAGE, Option, command_parser, subcommand_parent
from tickmesh.config import Config, ConfigError, load_config


class AdminError(Exception):
    """A failure to report in one line, with the exit code to return."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


OPTIONS: list[Option] = [
    (("--config",), {"help": "TOML file for the defaults below (default: $TICKMESH_CONFIG, ./tickmesh.toml)"}),
    (("--target",), {"metavar": "HOST:PORT", "help": "control's gRPC address (default: endpoints.grpc)"}),
    (("--token",), {"help": "admin token (default: $TICKMESH_ADMIN_TOKEN, else control.token_file)"}),
    (("--ca",), {"metavar": "FILE", "help": "use TLS, trusting this CA/cert (default: control.tls_cert if set)"}),
    (("--tls",), {"action": "store_true", "help": "use TLS with the system's trusted CAs"}),
    (("--timeout",), {"type": float, "default": 10.0, "help": "seconds to wait for a reply (default 10)"}),
    (("--json",), {"action": "store_true", "help": "print JSON (one object per line) for scripts"}),
]


def build_parser() -> argparse.ArgumentParser:
    """Every option before the command works after it too: `tickmesh-admin metrics --json`."""
    p = command_parser("tickmesh-admin", "Inspect and steer a running tickmesh mesh.", OPTIONS)
    common = subcommand_parent("tickmesh-admin", OPTIONS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("channels", parents=[common], help="each channel's live configuration")
    m = sub.add_parser("metrics", parents=[common], help="per-channel, aggregator and per-process metrics")
    m.add_argument("--channel", default="", help="only this channel")
    m.add_argument("--wide", action="store_true", help="every column (the default fits 80 columns)")
    m.add_argument("--watch", action="store_true", help="keep showing fresh metrics until Ctrl-C")
    m.add_argument("--interval", type=float, default=1.0, help="seconds between --watch updates (default 1)")
    m.add_argument("--count", type=int, default=0, help="with --watch: stop after this many updates")
    s = sub.add_parser(
        "set", parents=[common], help="change channel settings live: set ohlcv big_move_pct=5 batch_size=200"
    )
    s.add_argument("channel", help="tick, ohlcv or fmv")
    keys = "batch_size, timeout_ms, priority, paused, overflow, buffer, or a rule (big_move_pct, rules.big_move_pct)"
    s.add_argument("changes", nargs="+", metavar="KEY=VALUE", help=keys)
    for name in ("pause", "resume"):
        c = sub.add_parser(name, parents=[common], help=f"{name} a channel")
        c.add_argument("channel", help="tick, ohlcv or fmv")
    e = sub.add_parser(
        "events", parents=[common], help="journaled events (gRPC QueryEvents; the filters of tickmesh-events query)"
    )
    add_query_arguments(e)
    h = sub.add_parser("health", parents=[common], help="the gRPC health status (needs no token)")
    h.add_argument("--service", default="", help="a service name (default: the whole server)")
    return p


def parse_changes(items: Sequence[str]) -> dict[str, str]:
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AdminError(f"expected KEY=VALUE, got {item!r}", EXIT_USAGE)
        changes[key.strip()] = value.strip()
    return changes


def open_channel(args: argparse.Namespace, config: Config) -> grpc.Channel:
    target = args.target or config.endpoints.grpc
    ca = args.ca or config.control.tls_cert
    if not (ca or args.tls):
        return grpc.insecure_channel(target)
    try:
        roots = Path(ca).read_bytes() if ca else None
    except OSError as exc:
        raise AdminError(f"cannot read CA file {ca}: {exc.strerror}") from None
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))


def auth_metadata(args: argparse.Namespace, config: Config) -> list[tuple[str, str]]:
    token = args.token
    if not token:
        try:
            found = read_token(os.environ, config.control.token_file)
        except TokenError as exc:
            raise AdminError(str(exc), EXIT_AUTH) from None
        if found is None:
            raise AdminError(
                f"no admin token: pass --token, set TICKMESH_ADMIN_TOKEN, or run where control wrote "
                f"{config.control.token_file}",
                EXIT_AUTH,
            )
        token = found[0]
    return [("authorization", f"Bearer {token}")]


def explain(exc: grpc.RpcError, target: str) -> AdminError:
    """One clear line for a failed call."""
    code, details = exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE:
        return AdminError(f"cannot reach tickmesh-control at {target} ({details})", EXIT_ENDPOINT)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AdminError(f"not authorized by {target}: {details}", EXIT_AUTH)
    return AdminError(f"{code.name.lower().replace('_', ' ')}: {details}")


class Admin:
    """Runs one command; `out` prints text for people or JSON for scripts."""

    def __init__(self, args: argparse.Namespace, config: Config, console: Console) -> None:
        self.args, self.config, self.console = args, config, console
        self.channel = open_channel(args, config)
        self.stub = pb_grpc.ControlStub(self.channel)

    def out(self, msg: Any, render: Callable[[Any], Any]) -> None:
        if self.args.json:
            print(json.dumps(msg if isinstance(msg, dict) else tables.to_dict(msg)), flush=True)
        else:
            self.console.print(render(msg))

    def run(self) -> int:
        a = self.args
        if a.command == "health":
            return self.health()
        md = auth_metadata(a, self.config)
        if a.command == "channels":
            self.out(self.stub.ListChannels(pb.ListChannelsRequest(), metadata=md, timeout=a.timeout),
                     tables.channels_table)  # fmt: skip
        elif a.command == "metrics" and a.watch:
            self.watch(md)
        elif a.command == "metrics":
            req = pb.GetMetricsRequest(channel=a.channel)
            self.out(self.stub.GetMetrics(req, metadata=md, timeout=a.timeout), self.metrics_view)
        elif a.command == "events":
            self.events(md)
        else:
            self.change(md)
        return 0

    def metrics_view(self, snap: pb.MetricsSnapshot) -> RenderableType:
        return tables.metrics_view(snap, wide=self.args.wide)

    def change(self, md: list[tuple[str, str]]) -> None:
        a = self.args
        timeout = self.config.control.ack_timeout_s + a.timeout
        if a.command == "set":
            changes = parse_changes(a.changes)
            req = pb.UpdateChannelRequest(channel=a.channel, changes=changes)
            reply = self.stub.UpdateChannel(req, metadata=md, timeout=timeout)
        else:
            call = self.stub.PauseChannel if a.command == "pause" else self.stub.ResumeChannel
            reply = call(pb.ChannelRequest(channel=a.channel), metadata=md, timeout=timeout)
            changes = {"paused": ""}
        self.out(reply, lambda r: tables.update_text(r, list(changes)))

    def events(self, md: list[tuple[str, str]]) -> None:
        """One page of journaled events: a table, or --json the objects tickmesh-events query --json prints."""
        a = self.args
        optional = {k: v for k, v in (("seq_from", a.seq_from), ("seq_to", a.seq_to), ("epoch", a.epoch),
                                      ("run", a.run)) if v is not None}  # fmt: skip
        req = pb.QueryEventsRequest(
            tickers=a.ticker, kinds=a.kind, sources=a.source, since=a.since or "", until=a.until or "",
            newest_first=a.newest_first, limit=a.limit, offset=a.offset, page_token=a.page_token or "", **optional,
        )  # fmt: skip
        try:
            events = [json.loads(e.fields_json) | {"_token": e.page_token} for e in self.stub.QueryEvents(
                req, metadata=md, timeout=a.timeout)]  # fmt: skip
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:  # type: ignore[attr-defined]
                raise AdminError(exc.details() or "invalid argument", EXIT_USAGE) from None  # type: ignore[attr-defined]
            raise
        tokens = [e.pop("_token") for e in events]
        if a.json:
            for event in events:
                print(json.dumps(event), flush=True)
        else:
            self.console.print(events_table(events, "events"))
        if len(events) == a.limit:
            print(f"more: --page-token {tokens[-1]}", file=sys.stderr)

    def watch(self, md: list[tuple[str, str]]) -> None:
        a = self.args
        req = pb.WatchMetricsRequest(channel=a.channel, interval_s=a.interval)
        stream = self.stub.WatchMetrics(req, metadata=md)
        try:
            if a.json:
                for n, snap in enumerate(stream, 1):
                    self.out(snap, self.metrics_view)
                    if n == a.count:
                        break
                return
            try:
                with Live(console=self.console, auto_refresh=False) as live:
                    for n, snap in enumerate(stream, 1):
                        live.update(self.metrics_view(snap), refresh=True)
                        if n == a.count:
                            break
            finally:
                if not self.console.is_terminal:  # Live leaves its last frame unterminated in a pipe
                    self.console.line()
        finally:
            stream.cancel()

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=self.args.service), timeout=self.args.timeout)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        self.out({"service": self.args.service, "status": status}, lambda d: f"{d['status']}")
        return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        err.print(f"tickmesh-admin: invalid configuration: {exc}", markup=False)
        return EXIT_USAGE
    target = args.target or config.endpoints.grpc
    try:
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200  # pipes: do not squeeze
        admin = Admin(args, config, Console(highlight=False, width=width))
        with admin.channel:
            return admin.run()
    except grpc.RpcError as exc:
        failure = explain(exc, target)
    except AdminError as exc:
        failure = exc
    except KeyboardInterrupt:
        return 0
    err.print(f"tickmesh-admin: {failure}", markup=False)
    return failure.code


if __name__ == "__main__":
    sys.exit(main())
