"""Small durable files: written whole or not at all (fsync, rename, fsync the folder), moved aside when unreadable."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO

from tickmesh.security import private_dirs

log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: after a crash it holds the old bytes or the new ones, never a mix."""
    private_dirs(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself is durable only once the folder is
    finally:
        os.close(folder)


def move_aside(path: Path) -> Path:
    """Rename an unreadable file out of the way (kept for a human to look at); its new path."""
    aside = path.with_name(f"{path.name}.unreadable-{time.time_ns()}")
    os.replace(path, aside)
    return aside


def next_epoch(path: Path) -> int:
    """A process run's epoch: its start time in ns, and always above the last run's (kept in `path`), so
    peers can tell a late message of a run that is gone from one of the new run, whatever the clock did."""
    try:
        last = int(path.read_text())
    except FileNotFoundError:
        last = 0
    except (OSError, ValueError) as exc:
        log.warning("%s unreadable (%s); moved aside to %s", path, exc, move_aside(path))
        last = 0
    epoch = max(time.time_ns(), last + 1)
    write_atomic(path, str(epoch).encode())
    return epoch


class Held(RuntimeError):
    """Another process holds the lock: the message names it."""


def hold(path: Path, what: str) -> IO[str]:
    """An exclusive lock on `path` for the life of the process (the returned file: keep it open).
    Held: `what` already runs with this state folder (a second `honcho start` in one folder)."""
    private_dirs(path.parent)
    lock = open(path, "a")  # noqa: SIM115 - held, not closed
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise Held(f"{what} is already running with state folder {path.parent} (lock {path})") from None
    return lock
