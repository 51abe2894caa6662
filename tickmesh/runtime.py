"""What every process's main() does the same way: arguments, config, logging, stopping."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import zmq

from tickmesh.cli import EXIT_AUTH, EXIT_ENDPOINT, EXIT_FAILURE, Option, command_parser, log_level_option
from tickmesh.config import Config, ConfigError, load_config
from tickmesh.curve import SecurityError, secure_context
from tickmesh.durable import Held
from tickmesh.health import HEALTH_ENV, Health, health_address, start_probes, stop_probes
from tickmesh.security import open_links
from tickmesh.sockets import EndpointError

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A process still stopping this long after the signal logs every thread's stack: later than the
# longest drain (the aggregator's 4.5 s), before honcho's kill at 5 s.
STUCK_S = 4.8  # for processes without a config; mesh processes use process.stop_timeout_s - 0.2


class StopFlag:
    """Set by SIGTERM or SIGINT; loops poll with a timeout and check it.

    Stopping must end inside the stop grace (`process.stop_timeout_s`, honcho's 5 s): if it has not
    after `stuck_s` (just before), every thread's stack goes to stderr (the process keeps going), so a
    stuck stop names where it is stuck. Every check of the flag is a turn of the loop: it stamps
    `health` (what /livez reads), so a loop that stops turning fails its liveness probe.
    """

    def __init__(self, stuck_s: float = STUCK_S) -> None:
        self.stopping, self.stuck_s = False, stuck_s
        self.health = Health()
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._set)
        signal.signal(signal.SIGHUP, self._hup)  # not a stop (its default): the config is control's
        atexit.register(ignore_stop_signals)  # the handler is in place until the interpreter shuts down

    def _set(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            faulthandler.dump_traceback_later(self.stuck_s, exit=False)
        self.stopping = True

    @staticmethod
    def _hup(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGHUP ignored: live configuration comes from control (SIGHUP tickmesh-control reloads the file)")

    def __bool__(self) -> bool:
        self.health.turn()
        return self.stopping


def ignore_stop_signals() -> None:
    """From here on, SIGTERM and SIGINT change nothing: the process is stopping, or done.

    Late in the interpreter's shutdown, Python puts back the default action (end the process) of
    every signal it handles. A stop signal after that (honcho, systemd and orchestrators may send more
    than one) would turn a clean stop into exit -15. Ignored, it cannot; a stop that hangs is still
    ended by SIGKILL at the stop grace. The kernel is told first (libc's `signal`): `signal.signal`
    runs the handlers of signals already caught, then swaps, and a signal caught between the two
    would be reported as "ignored due to race condition" with a traceback. Then Python's own table,
    which its shutdown reads.
    """
    for sig in STOP_SIGNALS:
        _LIBC_SIGNAL(sig, _SIG_IGN)
        signal.signal(sig, signal.SIG_IGN)


_SIG_IGN = ctypes.c_void_p(1)  # signal.h
_LIBC_SIGNAL = ctypes.CDLL(None).signal
_LIBC_SIGNAL.argtypes, _LIBC_SIGNAL.restype = [ctypes.c_int, ctypes.c_void_p], ctypes.c_void_p


class LoopSignals:
    """Signals that call actions in an asyncio loop (control's and tickmesh-web's).

    Not `loop.add_signal_handler`: asyncio puts a signal's default action back whenever it lets go of
    a handler, and when its loop closes, so a stop signal in that instant ended the process with -15
    (tests/integration/test_stop_signals.py found it). The handlers here do nothing in Python (one
    cannot be interrupted by the next, however many come); the signal's number, written by Python's C
    handler to a pipe the loop reads, wakes the loop, which calls the action. `ignore_stop_signals`
    replaces a handler in one call, and the loop's closing leaves it alone.
    """

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.actions: dict[int, Callable[[], object]] = {}
        self._woken, wake = os.pipe()
        os.set_blocking(self._woken, False)
        os.set_blocking(wake, False)
        loop.add_reader(self._woken, self._dispatch)
        signal.set_wakeup_fd(wake, warn_on_full_buffer=False)  # both ends stay open until the process exits

    def on(self, sig: int, action: Callable[[], object]) -> None:
        """From now on `sig` calls `action` in the loop."""
        self.actions[sig] = action
        signal.signal(sig, _no_action)

    def _dispatch(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for signum in os.read(self._woken, 4096):
                if (action := self.actions.get(signum)) is not None:
                    action()


def _no_action(signum: int, frame: FrameType | None) -> None:
    """A Python handler, so Python's C handler writes the signal's number to the wake-up fd."""


CONFIG_OPTION: Option = (
    ("--config",),
    {"help": "TOML file (default: $TICKMESH_CONFIG, else ./tickmesh.toml, else built-in)"},
)
GLOBAL_OPTIONS: list[Option] = [CONFIG_OPTION, log_level_option()]


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every process takes: --config, --log-level, --version."""
    return command_parser(prog, description, GLOBAL_OPTIONS)


def mesh_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """parser() plus the mesh processes' --health (flag, then $TICKMESH_HEALTH, else off)."""
    health: Option = (
        ("--health",),
        {"metavar": "HOST:PORT", "type": health_address, "default": os.environ.get(HEALTH_ENV) or None,
         "help": f"serve GET /livez and /readyz here (default: ${HEALTH_ENV}, else off; docs/deploy.md)"},
    )  # fmt: skip
    return command_parser(prog, description, [*GLOBAL_OPTIONS, health])


def start(args: argparse.Namespace, name: str) -> Config | None:
    """Set up logging and load the config; None (after a clear message) if it is invalid."""
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"{name}: invalid configuration: {exc}", file=sys.stderr)
        return None


def endpoint_exit(exc: EndpointError | Held) -> int:
    """EXIT_AUTH for a CURVE key problem, else EXIT_ENDPOINT (a socket could not bind or connect, or
    another process already runs this role on the state folder)."""
    return EXIT_AUTH if isinstance(exc, SecurityError) else EXIT_ENDPOINT


def serve(config: Config, role: str, run: Callable[[zmq.Context, StopFlag], int], health: str | None = None) -> int:  # type: ignore[type-arg]
    """Run a mesh process's loop with its (CURVE-aware) context and stop flag, and its probes on `health`
    (HOST:PORT, if given; the loop sets readiness through `stop.health`); see endpoint_exit for socket errors."""
    steady_heap()
    stop = StopFlag(config.process.stop_budget(0.2))
    try:
        probes = start_probes(health, stop.health) if health else None
    except EndpointError as exc:
        log.error("%s", exc)
        return endpoint_exit(exc)
    ctx = secure_context(config, role)
    for name in open_links(config):
        log.warning("private link %s is tcp without CURVE: any local process can connect (docs/security.md)", name)
    try:
        return run(ctx, stop)
    except (EndpointError, Held) as exc:
        log.error("%s", exc)
        return endpoint_exit(exc)
    except Exception:  # a bug: say so and exit, so the supervisor (or honcho) sees it
        log.exception("%s crashed", role)
        return EXIT_FAILURE
    finally:
        ctx.destroy(linger=0)  # term() would wait forever on sockets a crash left open
        stop_probes(probes)


def release_memory() -> None:
    """Return freed heap to the operating system (glibc's malloc_trim); elsewhere, nothing to do.
    Without it, RSS keeps the high-water mark of a burst long gone (a slow subscriber's backlog in
    the aggregator, a checkpoint's copy of every changed row in a shard)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def steady_heap() -> None:
    """Serve every block of 128 KB or more from its own mapping, given back when freed (glibc's
    M_MMAP_THRESHOLD, set once for the process); elsewhere, nothing to do.

    glibc starts with that threshold, but raises it to the size of each mapped block freed (up to
    32 MB), so a long-running process soon takes its big temporaries (a checkpoint's cut: the sorted
    tickers, the rows, the sets of touched tickers) from the heap, where the small long-lived objects
    allocated around them pin its pages: a warm tick symbol cost a shard 1,561 B of RSS, and 1,457 B
    with the threshold fixed (docs/benchmarks.md, the 2026-12-07 08:00 entry)."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value
_LIBC = next((lib for lib in [ctypes.CDLL(None)] if hasattr(lib, "malloc_trim")), None)
