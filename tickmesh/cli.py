"""What every console script shares: exit codes, `--version`, `--log-level`, global flags after the subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import tickmesh

# The exit codes of every tickmesh command (the README's table).
EXIT_OK = 0
EXIT_FAILURE = 1  # it ran and failed: a crash, a failed flush, a file it could not read
EXIT_USAGE = 2  # bad arguments, configuration or input format (argparse's own code)
EXIT_ENDPOINT = 3  # an endpoint could not be bound, connected or reached
EXIT_AUTH = 4  # refused: no or a wrong admin token or API key

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# (flags, add_argument keywords) of an option a command takes before and after its subcommand.
Option = tuple[tuple[str, ...], dict[str, Any]]


def version() -> str:
    """tickmesh's version: `tickmesh.__version__`, which the package metadata is built from (reading
    the metadata instead would cost every process about 1.3 MB for importlib.metadata)."""
    return tickmesh.__version__


def log_level(text: str) -> str:
    """An argparse type: a logging level name, in any case."""
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"unknown level {text!r} (choose from {', '.join(LOG_LEVELS)})")
    return level


def log_level_option(default: str = "INFO") -> Option:
    return (("--log-level",), {"type": log_level, "default": default, "metavar": "LEVEL",
                               "help": f"{', '.join(LOG_LEVELS)} (any case; default {default})"})  # fmt: skip


def add_version(p: argparse.ArgumentParser, prog: str) -> None:
    p.add_argument("--version", action="version", version=f"{prog} {version()}")


def add_options(p: argparse.ArgumentParser, options: Sequence[Option], *, after_subcommand: bool = False) -> None:
    """Add `options`; after a subcommand their default is SUPPRESS, so what came before it is kept."""
    for flags, kwargs in options:
        p.add_argument(*flags, **({**kwargs, "default": argparse.SUPPRESS} if after_subcommand else kwargs))


def command_parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    """A parser with `--version` and `options` (which its subcommands take too: see `subcommand_parent`)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    add_version(p, prog)
    add_options(p, options)
    return p


def subcommand_parent(prog: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    """A parent for every subcommand: the global options again, so `cmd sub --flag` works like `cmd --flag sub`."""
    p = argparse.ArgumentParser(add_help=False)
    add_version(p, prog)
    add_options(p, options, after_subcommand=True)
    return p
