"""`tickmesh-feed sim|replay|polygon`: producers that PUSH records into the router's ingest socket."""

from __future__ import annotations

import argparse

from feeds import polygon, replay, sim
from tickmesh.config import with_endpoints
from tickmesh.runtime import StopFlag, parser, start

DESCRIPTIONS = {
    "sim": "A deterministic synthetic market: trades, one-minute bars and FMV updates.",
    "replay": "Replay files: Polygon flat files (CSV, .gz), generic OHLCV CSV, JSON lines of websocket messages.",
    "polygon": "A Polygon-compatible websocket client (trades T, aggregates AM/A, fair market value FMV).",
}


def _common() -> argparse.ArgumentParser:
    """Options every subcommand takes too; SUPPRESS keeps what was given before the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", default=argparse.SUPPRESS, help="TOML file (default: $TICKMESH_CONFIG, ...)")
    p.add_argument("--log-level", default=argparse.SUPPRESS, help="DEBUG, INFO, WARNING (default INFO)")
    p.add_argument("--ingest", default=argparse.SUPPRESS, help="router ingest endpoint (default from config)")
    p.add_argument("--sync", default=argparse.SUPPRESS, help="router sync endpoint (default from config)")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = parser("tickmesh-feed", "Feeds that push market data into the tickmesh router.")
    p.add_argument("--ingest", help="router ingest endpoint (default from config)")
    p.add_argument("--sync", help="router sync endpoint (default from config)")
    subs = p.add_subparsers(dest="feed", required=True, metavar="{sim,replay,polygon}")
    common = _common()
    sim.add_arguments(
        subs.add_parser("sim", parents=[common], help=DESCRIPTIONS["sim"], description=DESCRIPTIONS["sim"])
    )
    replay.add_arguments(
        subs.add_parser("replay", parents=[common], help=DESCRIPTIONS["replay"], description=DESCRIPTIONS["replay"])
    )
    polygon.add_arguments(
        subs.add_parser("polygon", parents=[common], help=DESCRIPTIONS["polygon"], description=DESCRIPTIONS["polygon"])
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = start(args, f"feed.{args.feed}")
    if config is None:
        return 2
    config = with_endpoints(config, ingest=args.ingest, sync=args.sync)
    stop = StopFlag()
    if args.feed == "sim":
        return sim.run(args, config, stop.__bool__)
    if args.feed == "replay":
        return replay.run(args, config, stop.__bool__)
    return polygon.run(args, config, stop.__bool__)
