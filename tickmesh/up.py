"""`tickmesh up`: the whole mesh from any install and any directory — the packaged Procfile run by honcho (meshrun)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from honcho.manager import Manager
from honcho.printer import Printer

from journal import backtest
from tickmesh import meshrun
from tickmesh.cli import add_version
from tickmesh.config import ConfigError, load_config
from tickmesh.meshrun import STOPPED_BY_SIGNAL

FEEDS = ("sim", "replay", "polygon", "none")
CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)


def check_feed(feed: Sequence[str]) -> str | None:
    """Why `--feed` is wrong, or None."""
    if feed[0] not in FEEDS:
        return f"--feed {feed[0]}: choose one of {', '.join(FEEDS)}"
    if feed[0] == "replay" and len(feed) < 2:
        return "--feed replay needs at least one FILE"
    if feed[0] != "replay" and len(feed) > 1:
        return f"--feed {feed[0]} takes no files"
    return None


def exit_code(manager: Manager) -> int:
    """0 when a signal stopped the mesh and every process stopped cleanly; else the first failure's code."""
    code = int(manager.returncode or 0)
    if code not in STOPPED_BY_SIGNAL:
        return code  # a process ended first (honcho then stopped the rest): its exit code
    codes = [p.get("returncode") for p in manager._processes.values()]  # honcho 2 keeps them only there
    return 0 if all(c in CLEAN_EXITS for c in codes) else code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickmesh", description="Run the tickmesh mesh, or a back-test run of it.")
    add_version(p, "tickmesh")
    subs = p.add_subparsers(dest="command", required=True)
    up = subs.add_parser(
        "up",
        help="start the whole mesh (router, workers, aggregator, control, a feed, a subscriber)",
        description="Start the whole mesh in the foreground, one prefixed line per output line; Ctrl-C stops it.",
        epilog="Exit status: 0 after Ctrl-C / SIGTERM with every process stopped cleanly; otherwise the exit "
        "status of the first process that ended (docs/deploy.md lists them).",
    )
    up.add_argument(
        "--feed",
        nargs="+",
        default=["sim"],
        metavar="KIND",
        help="sim (default, the synthetic market), replay FILE… (the mesh keeps running after them), "
        "polygon (docs/feeds.md), or none (push your own records)",
    )
    up.add_argument("--config", help="TOML file (default: $TICKMESH_CONFIG, else ./tickmesh.toml, else built-in)")
    up.add_argument("--state-dir", help="root of relative state paths (default: $TICKMESH_STATE_DIR, else the cwd)")
    backtest.add_parser(subs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "backtest":
        return backtest.main(args)
    problem = check_feed(args.feed)
    if problem:
        print(f"tickmesh up: {problem}", file=sys.stderr)
        return 2
    env = meshrun.environment(os.environ, args.config, args.state_dir)
    try:
        config = load_config(None, env)  # a bad file is reported once, here, not by every process
    except ConfigError as exc:
        print(f"tickmesh up: invalid configuration: {exc}", file=sys.stderr)
        return 2
    manager = meshrun.manager(meshrun.processes(args.feed, routers=config.router.count), env, Printer(sys.stdout))
    manager.loop()
    return exit_code(manager)


if __name__ == "__main__":
    sys.exit(main())
