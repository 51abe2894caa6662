"""Test harness for the control plane: a real tickmesh-control process and stand-in mesh processes."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import zmq

from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc
from tests.mesh import poll_until
from tickmesh.bus import SOFTWARE, BusClient, Status, encode_status
from tickmesh.config import Config, load_config
from tickmesh.metrics import Metrics
from tickmesh.schema import WIRE_VERSION

TOKEN = "test-token-0123456789"
GRPC_LINE = re.compile(r"gRPC listening on (\S+):(\d+)")
PROM_LINE = re.compile(r"Prometheus metrics on http://(\S+?)/metrics")


def write_config(tmp: Path, *, ack_timeout_s: float = 3.0, token_file: str | None = "", extra: str = "") -> Path:
    """ipc bus endpoints in `tmp`, ephemeral gRPC and HTTP ports, fast status reports.

    `token_file` "" means `tmp`/admin.token; None leaves the default (.tickmesh/admin.token in the cwd).
    """
    path = tmp / "tickmesh.toml"
    token_line = "" if token_file is None else f'token_file = "{token_file or tmp / "admin.token"}"'
    path.write_text(
        f"""
[endpoints]
control_config = "ipc://{tmp}/cc"
control_status = "ipc://{tmp}/cs"
grpc = "127.0.0.1:0"
prometheus = "127.0.0.1:0"

[control]
status_interval_s = 0.2
ack_timeout_s = {ack_timeout_s}
{token_line}
{extra}
"""
    )
    return path


class Control:
    """A running tickmesh-control subprocess and how to talk to it."""

    def __init__(self, proc: subprocess.Popen[bytes], config_path: Path, log: Path, token: str | None) -> None:
        self.proc, self.config_path, self.log, self.token = proc, config_path, log, token
        self.dir = config_path.parent
        self.config: Config = load_config(str(config_path), env={})
        text = str(poll_until(self._listening, 20.0, what="control to listen"))
        grpc_at, prom_at = GRPC_LINE.search(text), PROM_LINE.search(text)
        assert grpc_at and prom_at
        self.target = f"{grpc_at[1]}:{grpc_at[2]}"
        self.prometheus = prom_at[1]
        self.channel = grpc.insecure_channel(self.target)
        self.stub = pb_grpc.ControlStub(self.channel)

    def _listening(self) -> str | None:
        text = self.log.read_text()
        if self.proc.poll() is not None:
            raise AssertionError(f"control exited with {self.proc.returncode}:\n{text}")
        return text if GRPC_LINE.search(text) and PROM_LINE.search(text) else None

    @property
    def md(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")]

    def metrics(self, channel: str = "") -> pb.MetricsSnapshot:
        return self.stub.GetMetrics(pb.GetMetricsRequest(channel=channel), metadata=self.md, timeout=5)

    def live(self, *names: str) -> bool:
        """True once every named process shows as live."""
        live = {p.process for p in self.metrics().processes if p.live}
        return set(names) <= live

    def stop(self) -> int:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def running_control(
    *,
    token: str | None = TOKEN,
    ack_timeout_s: float = 3.0,
    token_file: str | None = "",
    extra: str = "",
) -> Iterator[Control]:
    """Start tickmesh-control with ipc bus endpoints and ephemeral ports; always stop it.

    Its config, log and token file live in a fresh short folder (ipc paths are limited to about
    100 bytes, so not pytest's tmp_path), which is also its working directory: `Control.dir`.
    """
    tmp = Path(tempfile.mkdtemp(prefix="tmc-"))
    config_path = write_config(tmp, ack_timeout_s=ack_timeout_s, token_file=token_file, extra=extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")}
    if token:
        env["TICKMESH_ADMIN_TOKEN"] = token
    log = tmp / "control.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control", "--config", str(config_path)],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=tmp,
        )
    control = None
    try:
        control = Control(proc, config_path, log, token)
        yield control
    finally:
        if control is not None:
            control.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


class FakeProcess:
    """Plays one mesh process on the bus with a real BusClient in its own thread.

    It applies each new config version and acks it at once (unless `applies` is
    False: a stuck process that keeps reporting its old version). With `clock_shift_ns`
    its reports are stamped by a clock that far ahead of this host's (a skewed host).
    """

    def __init__(
        self,
        control: Control,
        process: str,
        channels: list[str],
        *,
        counters: dict[str, int] | None = None,
        gauges: dict[str, float] | None = None,
        version: int = 0,
        applies: bool = True,
        clock_shift_ns: int = 0,
    ) -> None:
        self.config, self.process, self.channels = control.config, process, channels
        self.metrics = Metrics()
        self.metrics.counters.update(counters or {})
        self.metrics.gauges.update(gauges or {})
        self.version, self.applies, self.clock_shift_ns = version, applies, clock_shift_ns
        self._next_report = 0
        self.applied: list[tuple[int, Config]] = []  # (version, config) as applied, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=process, daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> FakeProcess:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._error:
            raise self._error

    @property
    def current(self) -> Config:
        return self.applied[-1][1] if self.applied else self.config

    def _run(self) -> None:
        ctx = zmq.Context()
        bus = BusClient(ctx, self.config, process=self.process, role=self.process.split(".")[0],
                        channels=self.channels, metrics=self.metrics)  # fmt: skip
        bus.version = self.version
        config = self.config
        try:
            while not self._stop.is_set():
                if self.applies and bus.sub.poll(20):
                    new = bus.receive(config)
                    if new is not None:
                        config = new
                        self.applied.append((bus.version, new))
                        self._report(bus, force=True)  # the ack
                elif not self.applies:
                    self._stop.wait(0.02)
                self._report(bus)
        except BaseException as exc:  # surfaced in __exit__
            self._error = exc
        finally:
            bus.close()
            ctx.term()

    def _report(self, bus: BusClient, force: bool = False) -> None:
        """bus.report(), or with clock_shift_ns the same Status stamped by the shifted clock."""
        if not self.clock_shift_ns:
            bus.report(force=force)
            return
        now = time.time_ns()
        if not force and now < self._next_report:
            return
        self._next_report = now + bus.interval_ns
        status = Status(self.process, bus.role, self.channels, socket.gethostname(), os.getpid(), bus.version,
                        self.metrics.started_ns, now + self.clock_shift_ns, {}, {}, SOFTWARE, WIRE_VERSION)  # fmt: skip
        bus.push.send(encode_status(status))
