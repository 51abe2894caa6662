"""The mesh's processes from the packaged Procfile, run by honcho: `tickmesh up`, and a back-test's own mesh."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from tickmesh.config import CHANNELS, Config

T = TypeVar("T")
STOPPED_BY_SIGNAL = (130, 143)  # honcho's return code after SIGINT / SIGTERM reached it


class MeshStopped(RuntimeError):
    """A process of the mesh ended while the mesh was still needed; the message names it and its exit code."""


def poll_until(
    check: Callable[[], T], timeout: float, what: str, interval: float = 0.05, error: type[Exception] = TimeoutError
) -> T:
    """Call `check` until it returns something truthy; `error` naming `what` after `timeout` seconds.
    (The bench fails with its StageError, the tests with AssertionError.)"""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return result


def procfile() -> dict[str, str]:
    """The packaged Procfile's processes (the checkout's top-level Procfile is the same file)."""
    text = resources.files("tickmesh").joinpath("Procfile").read_text()
    return dict(parse_procfile(text).processes)


def processes(feed: Sequence[str], python: str = sys.executable, routers: int = 1) -> dict[str, str]:
    """The Procfile's processes run by `python`, with the feed: sim (as packaged), replay FILE…, polygon, none;
    and router i (`router<i>`) for each router beyond the first (`[router] count`)."""
    procs = procfile()
    for index in range(1, routers):
        procs[f"router{index}"] = f"exec python -m router --index {index}"
    kind, files = feed[0], feed[1:]
    if kind == "none":
        del procs["feed"]
    elif kind == "replay":  # held: the mesh keeps running after the files are done
        paths = [shlex.quote(str(Path(f).resolve())) for f in files]
        procs["feed"] = " ".join(["exec python -m tickmesh.hold feeds replay", *paths])
    elif kind == "polygon":
        procs["feed"] = "exec python -m feeds polygon"
    # `python` may not be on PATH (Debian has python3 only) or may be another one: use this interpreter
    return {name: cmd.replace("exec python ", f"exec {shlex.quote(python)} ", 1) for name, cmd in procs.items()}


def environment(base: Mapping[str, str], config: str | None, state_dir: str | None) -> dict[str, str]:
    """The processes' environment: this interpreter's bin first on PATH, config and state root absolute."""
    env = dict(base, PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", os.defpath)])
    if config:
        env["TICKMESH_CONFIG"] = str(Path(config).resolve())
    if state_dir:
        env["TICKMESH_STATE_DIR"] = str(Path(state_dir).resolve())
    return env


def bus_names(config: Config) -> list[str]:
    """The names the mesh's processes report under on the status bus (routers, supervisors, shards, aggregator)."""
    names = ["router" if i == 0 else f"router.{i}" for i in range(config.router.count)] + ["aggregator"]
    for channel in CHANNELS:
        names += [f"supervisor.{channel}"] + [f"worker.{channel}.{s}" for s in range(config.channel(channel).shards)]
    return names


def manager(procs: Mapping[str, str], env: Mapping[str, str], printer: Printer, cwd: str | None = None) -> Manager:
    """A honcho Manager for `procs`, each named `<name>.1` as `honcho start` names them."""
    honcho = Manager(printer)
    for name, command in procs.items():
        honcho.add_process(f"{name}.1", command, env=dict(env, HONCHO_PROCESS_NAME=f"{name}.1"), cwd=cwd)
    return honcho


def run_beside(honcho: Manager, work: Callable[[Callable[[], None]], T]) -> T:
    """Run the mesh while `work(check)` runs in a thread of its own, then stop the mesh: `work`'s result.

    honcho's loop keeps this thread (its SIGINT/SIGTERM handlers need the main thread); `check` raises
    MeshStopped once any process has ended (honcho then stops the rest). `work`'s exception is raised here,
    once the mesh has stopped; KeyboardInterrupt if a signal stopped the mesh before `work` was done.
    """
    outcome: list[Any] = []

    def check() -> None:
        ended = {n: p["returncode"] for n, p in honcho._processes.items() if p.get("returncode") is not None}
        if ended:
            raise MeshStopped(", ".join(f"{name} exited with {code}" for name, code in ended.items()))

    def drive() -> None:
        try:
            # honcho records a process's pid as its loop hears it started; stopping needs every pid
            poll_until(honcho._all_started, float("inf"), "the mesh's processes to start")
            outcome.append(work(check))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)
        finally:
            honcho.terminate()

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=drive, name="mesh-work")
    thread.start()
    try:
        honcho.loop()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        thread.join()
    result = outcome[0]
    if isinstance(result, MeshStopped) and honcho.returncode in STOPPED_BY_SIGNAL:
        raise KeyboardInterrupt
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[no-any-return]
