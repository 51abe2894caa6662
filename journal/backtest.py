"""`tickmesh backtest NAME FILE…`: replay files into a fresh mesh of their own, journaled as run NAME."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import zmq
from honcho.printer import Printer

from journal.backends import describe, open_store, sqlite_path
from journal.query import RUN
from tickmesh import meshrun
from tickmesh.boundary import Rejection, decode
from tickmesh.bus import Status, status_decoder
from tickmesh.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from tickmesh.config import CHANNELS, Config, ConfigError, load_config, state_root, to_toml, update_channel
from tickmesh.endpoints import Endpoints
from tickmesh.schema import HEARTBEAT_TOPIC, Heartbeat, published_decoder
from tickmesh.security import private_dirs
from tickmesh.sockets import make_socket

# The run's own mesh: history is never stale (no wall-clock age limit), reports and heartbeats come often
# (the end of the run is read from them), and a long replay's final flush gets time to finish.
RUN_SETTINGS: dict[str, dict[str, Any]] = {
    "aggregator": {"max_event_age_s": 0, "heartbeat_s": 0.2},
    "control": {"status_interval_s": 0.2},
    "process": {"stop_timeout_s": 20.0},
}
SETTLE_S = 120.0  # how long the mesh may take to publish and journal what the feed sent
START_S = 30.0  # how long the run's mesh may take until every process reports
MESH = ("tick", "ohlcv", "fmv", "aggregator", "journal")  # of the Procfile, with the routers (no feed, control, …)
Check = Callable[[], None]  # raises MeshStopped once a process of the run's mesh has ended


class BacktestError(RuntimeError):
    """The back-test cannot start or did not finish: the message says why; `code` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def add_parser(subs: Any) -> None:
    """The `backtest` subcommand of `tickmesh`."""
    b = subs.add_parser(
        "backtest",
        help="replay files into a fresh mesh of their own, journaled as run NAME (docs/journal.md)",
        description="Replay FILEs into a mesh started for this run alone (state in <state root>/runs/NAME), "
        "journal its events as run NAME in the shared journal, wait until every record is processed and "
        "every event journaled, stop, and print a summary. Compare runs with `tickmesh-events diff A B`.",
    )
    b.add_argument("name", metavar="NAME", help="the run's name: letters, digits, '.', '_', ':' or '-'")
    b.add_argument("files", nargs="+", metavar="FILE", help="files to replay (as tickmesh-feed replay reads them)")
    b.add_argument("--set", action="append", default=[], metavar="CHANNEL.KEY=VALUE",
                   help="a channel setting for this run, e.g. tick.band4_high_low_pct=0.5 (repeatable)")  # fmt: skip
    b.add_argument("--replace", action="store_true", help="delete a run already journaled under NAME first")
    b.add_argument("--config", help="TOML file (default: $TICKMESH_CONFIG, else ./tickmesh.toml, else built-in)")
    b.add_argument("--state-dir", help="state root (default: $TICKMESH_STATE_DIR, else the cwd)")
    b.add_argument("--format", help="the files' format (default: detected; see tickmesh-feed replay --help)")
    b.add_argument("--ticker", help="the ticker of a generic OHLCV file without a ticker column")
    b.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def main(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    try:
        summary = backtest(args, env)
    except BacktestError as exc:
        print(f"tickmesh backtest: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:  # the run's mesh is stopped already (backtest's finally)
        print("tickmesh backtest: interrupted; the run is incomplete (run it again with --replace)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary))
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary["events"].items())) or "none"
        print(f"run {summary['run']}: {summary['sent']:,} records replayed, {summary['journaled']:,} events journaled "
              f"({kinds}) in {summary['seconds']:.1f} s; {summary['journal']}; state {summary['state']}")  # fmt: skip
    return EXIT_OK


def backtest(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """Run it; the summary. BacktestError on anything that stops it."""
    started = time.monotonic()
    name = args.name
    if not RUN.fullmatch(name) or name.startswith("."):
        raise BacktestError(f"run name {name[:40]!r}: letters, digits, '.', '_', ':' or '-' (not first)", EXIT_USAGE)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise BacktestError(f"no such file: {missing[0]}", EXIT_USAGE)
    root = Path(state_root(args.state_dir, env) or ".").resolve()
    config = run_config(args, env, root)
    _claim(config, env, name, args.replace)
    folder = root / "runs" / name
    shutil.rmtree(folder, ignore_errors=True)  # a run starts fresh: nothing applied, nothing published
    private_dirs(folder)
    for key in [k for k in os.environ if k.startswith("TICKMESH_") and k[9:].lower() in Endpoints.__struct_fields__]:
        del os.environ[key]  # the run's processes use its private sockets, whatever the shell says
    sockets = Path(tempfile.mkdtemp(prefix="tmbt-"))  # short: an ipc path is limited to about 100 bytes
    try:
        epoch, seq, fed = _run_mesh(config, env, name, args, folder, sockets)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    counts = _counts(config, env, name)
    seconds = round(time.monotonic() - started, 2)
    return {"run": name, "files": fed["files"], "sent": fed["sent"], "rejected": fed["rejected"],
            "published": seq, "journaled": sum(counts.values()), "events": counts, "seconds": seconds,
            "journal": describe(config), "state": str(folder)}  # fmt: skip


def run_config(args: argparse.Namespace, env: Mapping[str, str], root: Path) -> Config:
    """The user's config (its journal is the shared one), paths absolute, with the run's --set changes applied."""
    try:
        config = load_config(args.config, env, str(root))
        for item in args.set:
            key, sep, value = item.partition("=")
            channel, dot, field = key.strip().partition(".")
            if not sep or not dot or channel not in CHANNELS:
                raise ConfigError(
                    f"--set {item!r}: expected CHANNEL.KEY=VALUE with CHANNEL one of {', '.join(CHANNELS)}"
                )
            config = update_channel(config, channel, {field: value.strip()})
    except ConfigError as exc:
        raise BacktestError(f"invalid configuration: {exc}", EXIT_USAGE) from None
    if config.journal.backend == "sqlite":  # the shared journal, wherever the run's own state goes
        journal = msgspec.structs.replace(config.journal, path=str(sqlite_path(config).resolve()))
        config = msgspec.structs.replace(config, journal=journal)
    return config


def settings(config: Config, folder: Path, sockets: Path, name: str) -> dict[str, Any]:
    """The run mesh's config: the user's channels, journal (tagging run `name`) and security; state in
    `folder`; ipc sockets in `sockets`, so a run never meets another mesh."""
    data: dict[str, Any] = msgspec.to_builtins(config)
    data["endpoints"] = {n: f"ipc://{sockets}/{n}" for n in Endpoints.__struct_fields__}
    data["endpoints"].update(grpc="127.0.0.1:0", prometheus="127.0.0.1:0")  # no control process runs
    data["state"].update(dir=str(folder / ".tickmesh/state"), dead_letters=str(folder / ".tickmesh/dead-letters"))
    data["journal"]["run"] = name
    for section, values in RUN_SETTINGS.items():
        data[section].update(values)
    return data


def _run_mesh(
    config: Config, env: Mapping[str, str], name: str, args: argparse.Namespace, folder: Path, sockets: Path
) -> tuple[int, int, dict[str, Any]]:
    """The run's mesh (the Procfile's routers, workers, aggregator and journal, under honcho, its output in
    logs/mesh.log) while the replay runs: the last publication's (epoch, seq) and the feed's summary."""
    config_path = folder / "tickmesh.toml"
    config_path.write_text(to_toml(settings(config, folder, sockets, name)))
    run = load_config(str(config_path), env={})
    procs = meshrun.processes(["none"], routers=run.router.count)
    procs = {n: cmd for n, cmd in procs.items() if n in MESH or n.startswith("router")}
    (folder / "logs").mkdir(exist_ok=True)
    log = folder / "logs" / "mesh.log"
    with open(log, "w", buffering=1) as out:
        honcho = meshrun.manager(procs, meshrun.environment(os.environ, str(config_path), None),
                                 Printer(out, colour=False), cwd=str(folder))  # fmt: skip
        try:
            return meshrun.run_beside(honcho, lambda check: _drive(check, run, config, env, name, args, folder))
        except (meshrun.MeshStopped, TimeoutError) as exc:
            raise BacktestError(f"{exc}; the mesh's log ({log}) ends:\n{log.read_text()[-3_000:]}") from None


def _drive(
    check: Check, run: Config, config: Config, env: Mapping[str, str], name: str, args: argparse.Namespace,
    folder: Path,
) -> tuple[int, int, dict[str, Any]]:  # fmt: skip
    """In the run's mesh: wait for every process, replay, settle, wait for the journal."""
    ctx = zmq.Context()
    try:
        bus = StatusBus(ctx, run.endpoints.control_status)
        wanted = [*meshrun.bus_names(run), "journal"]
        meshrun.poll_until(lambda: bus.reported(wanted, check), START_S, f"status from {', '.join(wanted)}")
        fed = _replay(folder / "tickmesh.toml", args, folder)
        epoch, seq = _settle(ctx, run, bus, check, time.time_ns())
        _wait_journaled(config, env, name, (epoch, seq), check)
        return epoch, seq, fed
    finally:
        ctx.destroy(linger=0)


class StatusBus:
    """The run's status bus, bound here (the run has no control process): each process's latest Status."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:  # type: ignore[type-arg]
        self.pull = make_socket(ctx, zmq.PULL, bind=endpoint, hwm=10_000)
        self.latest: dict[str, Status] = {}

    def read(self) -> dict[str, Status]:
        while self.pull.poll(0):
            status = decode(status_decoder, self.pull.recv())
            if not isinstance(status, Rejection):
                self.latest[status.process] = status
        return self.latest

    def reported(self, names: list[str], check: Check) -> bool:
        check()
        latest = self.read()
        return all(n in latest for n in names)


def _claim(config: Config, env: Mapping[str, str], name: str, replace: bool) -> None:
    """Refuse a name already journaled (unless `replace`: then its rows go)."""
    try:
        store = open_store(config, env, create=True)
    except Exception as exc:  # StoreError, or the database's own error while migrating
        raise BacktestError(f"cannot open the journal ({describe(config)}): {exc}") from None
    try:
        if store.has_run(name):
            if not replace:
                raise BacktestError(f"run {name!r} is already in the journal: pick another name or --replace",
                                    EXIT_USAGE)  # fmt: skip
            store.delete_run(name)
    finally:
        store.close()


def _replay(config_path: Path, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """`tickmesh-feed replay FILE… --json` into the run's mesh; its summary (it flushes: the router routed all)."""
    extra = [f"--{flag}={value}" for flag in ("format", "ticker") if (value := getattr(args, flag))]
    files = [str(Path(f).resolve()) for f in args.files]
    argv = [sys.executable, "-m", "feeds", "replay", *files, *extra, "--json", "--config", str(config_path)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=folder, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    (folder / "logs" / "feed.log").write_text(done.stderr)
    try:
        fed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise BacktestError(f"the replay failed (exit {done.returncode}):\n{done.stderr[-2_000:]}") from None
    if not fed["flushed"] or fed["failed_files"] or not fed["sent"]:
        why = "nothing sent" if not fed["sent"] else f"files failed: {fed['failed_files']}" if fed["failed_files"] \
            else "the router did not acknowledge the final flush"  # fmt: skip
        raise BacktestError(f"the replay failed: {why}; see {folder / 'logs' / 'feed.log'}")
    return fed


def _settle(ctx: zmq.Context, run: Config, bus: StatusBus, check: Check, after_ns: int) -> tuple[int, int]:  # type: ignore[type-arg]
    """Once the router holds nothing (every record processed, its events with the aggregator): the last
    publication's (epoch, seq), from two heartbeats in a row that announce the same seq (nothing more comes)."""

    def drained() -> bool:
        check()
        router = bus.read().get("router")
        if router is None or router.time_ns <= after_ns:
            return False
        gauges = router.gauges
        return all(gauges.get(f"{ch}.unacked") == 0 and gauges.get(f"{ch}.queue_depth") == 0 for ch in CHANNELS)

    meshrun.poll_until(drained, SETTLE_S, "every record processed")
    sub = make_socket(ctx, zmq.SUB, connect=run.endpoints.publish, hwm=1_000)
    sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
    try:
        last: tuple[int, int] | None = None
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            check()
            if not sub.poll(1_000):
                continue
            beat = published_decoder.decode(sub.recv_multipart()[-1])
            if isinstance(beat, Heartbeat):
                if last == (beat.epoch, beat.seq):
                    return last
                last = (beat.epoch, beat.seq)
    finally:
        sub.close(0)
    raise BacktestError("the aggregator did not settle (no two equal heartbeats)")


def _wait_journaled(config: Config, env: Mapping[str, str], name: str, seam: tuple[int, int], check: Check) -> None:
    def reached() -> bool:
        check()
        store = open_store(config, env, create=False)
        try:
            return (store.position(name) or (0, 0)) >= seam
        finally:
            store.close()

    meshrun.poll_until(reached, SETTLE_S, f"the journal to reach seq {seam[1]}")


def _counts(config: Config, env: Mapping[str, str], name: str) -> dict[str, int]:
    store = open_store(config, env, create=False)
    try:
        return store.kinds(name)
    finally:
        store.close()
