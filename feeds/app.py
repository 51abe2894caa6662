"""`tickmesh-feed sim|replay|polygon`: producers that PUSH records into the router's ingest socket."""

from __future__ import annotations

import argparse

from feeds import polygon, replay, sim
from tickmesh.cli import EXIT_USAGE, Option, command_parser, subcommand_parent
from tickmesh.config import with_endpoints
from tickmesh.runtime import GLOBAL_OPTIONS, StopFlag, start

DESCRIPTIONS = {
    "sim": "A deterministic synthetic market: trades, one-minute bars and FMV updates.",
    "replay": "Replay files: Polygon flat files (CSV, .gz), generic OHLCV CSV, JSON lines of websocket messages.",
    "polygon": "A Polygon-compatible websocket client (trades T, aggregates AM/A, fair market value FMV).",
}


OPTIONS: list[Option] = [
    *GLOBAL_OPTIONS,
    (("--ingest",), {"help": "router ingest endpoint (default from config)"}),
    (("--sync",), {"help": "router sync endpoint (default from config)"}),
]


def build_parser() -> argparse.ArgumentParser:
    """Every option before the subcommand works after it too: `tickmesh-feed sim --ingest ...`."""
    p = command_parser("tickmesh-feed", "Feeds that push market data into the tickmesh router.", OPTIONS)
    subs = p.add_subparsers(dest="feed", required=True, metavar="{sim,replay,polygon}")
    common = subcommand_parent("tickmesh-feed", OPTIONS)
    for name, module in (("sim", sim), ("replay", replay), ("polygon", polygon)):
        module.add_arguments(
            subs.add_parser(name, parents=[common], help=DESCRIPTIONS[name], description=DESCRIPTIONS[name])
        )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = start(args, f"feed.{args.feed}")
    if config is None:
        return EXIT_USAGE
    config = with_endpoints(config, ingest=args.ingest, sync=args.sync)
    stop = StopFlag()
    if args.feed == "sim":
        return sim.run(args, config, stop.__bool__)
    if args.feed == "replay":
        return replay.run(args, config, stop.__bool__)
    return polygon.run(args, config, stop.__bool__)
