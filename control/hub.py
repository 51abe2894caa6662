"""Control's end of the control bus: publish the versioned config, merge status reports, wait for acks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import zmq
import zmq.asyncio

from control.state import BadStatus, MeshState, MeshView
from control.store import ConfigStore
from tickmesh.boundary import Rejection, decode_single
from tickmesh.bus import SOFTWARE, ConfigState, Status, encode_config, status_decoder
from tickmesh.config import Config
from tickmesh.curve import security_counters
from tickmesh.metrics import Metrics
from tickmesh.schema import WIRE_VERSION
from tickmesh.sockets import make_socket

log = logging.getLogger(__name__)
REPUBLISH_S = 1.0  # late joiners converge within this
STATUS_HWM = 10_000
LOG_EVERY_INVALID = 1_000  # log the first bad status report and then one in this many


class AckTimeout(Exception):
    """Some holders of a channel did not apply a version in time."""

    def __init__(self, version: int, timeout_s: float, missing: list[str], acked: list[str]) -> None:
        self.version, self.missing, self.acked = version, missing, acked
        by = ", ".join(acked) or "none"
        super().__init__(
            f"config version {version} was not acknowledged within {timeout_s:g} s by "
            f"{', '.join(missing)} (acknowledged by: {by}); the version stays published"
        )


class Hub:
    """The mesh state plus the two bus sockets; every method runs in the event loop's thread."""

    def __init__(self, ctx: zmq.asyncio.Context, config: Config) -> None:
        self.ctx = ctx
        self.state = MeshState(config, ConfigStore(config.state.dir))
        self.metrics = Metrics()
        self.ack_timeout_s = config.control.ack_timeout_s
        self.pub = make_socket(ctx, zmq.PUB, bind=config.endpoints.control_config, hwm=1_000)
        try:
            self.pull = make_socket(ctx, zmq.PULL, bind=config.endpoints.control_status, hwm=STATUS_HWM)
        except Exception:
            self.pub.close(0)
            raise
        self._seen = asyncio.Event()  # set (and replaced) whenever a status report arrives
        self._change_lock = asyncio.Lock()
        self._host = socket.gethostname()

    def close(self) -> None:
        self.pub.close(0)
        self.pull.close(0)

    # -- the bus -------------------------------------------------------------
    async def publish(self) -> None:
        state = self.state
        msg = ConfigState(state.version, state.config.channels, state.config.aggregator)
        await self.pub.send_multipart(encode_config(msg))  # type: ignore[misc]  # zmq.asyncio: a Future
        self.metrics.count("control.config_published")

    async def run_publisher(self) -> None:
        """Re-publish the current state every second, so a process that starts late converges."""
        while True:
            await self.publish()
            self.report_self()
            await asyncio.sleep(REPUBLISH_S)

    async def run_status(self) -> None:
        """Merge every status report into the state; bad ones are counted, never fatal."""
        while True:
            frames = await self.pull.recv_multipart()  # type: ignore[misc]  # zmq.asyncio: a Future
            self.handle_status(frames)

    def handle_status(self, frames: list[bytes]) -> None:
        status = decode_single(status_decoder, frames)
        try:
            if isinstance(status, Rejection):
                raise BadStatus(f"{status.reason}: {status.detail}")
            self.state.apply_status(status, time.time_ns())
        except BadStatus as exc:
            self.metrics.count("control.status_invalid")
            if self.metrics.counters["control.status_invalid"] % LOG_EVERY_INVALID == 1:
                log.warning("bad status report ignored: %s", exc)
            return
        self.metrics.count("control.status_received")
        self._seen.set()
        self._seen = asyncio.Event()

    def report_self(self) -> None:
        """Control's own entry in the process list."""
        now = time.time_ns()
        self.metrics.counters.update(security_counters(self.ctx))
        status = Status(
            process="control",
            role="control",
            channels=[],
            host=self._host,
            pid=os.getpid(),
            config_version=self.state.version,
            started_ns=self.metrics.started_ns,
            time_ns=now,
            counters=dict(self.metrics.counters),
            gauges=self.metrics.snapshot_gauges(),
            software=SOFTWARE,
            wire=WIRE_VERSION,
        )
        self.state.apply_status(status, now)

    def view(self, channel: str | None = None) -> MeshView:
        self.report_self()
        return self.state.view(time.time_ns(), channel)

    # -- changes -------------------------------------------------------------
    async def reload(self, file_config: Config) -> None:
        """SIGHUP: the config file's settings as a new live version, published (control/state.py)."""
        async with self._change_lock:
            changed = self.state.reload(file_config)
            if changed:
                self.metrics.count("control.config_changes")
                log.info("config file reloaded: version %d (%s)", self.state.version, ", ".join(changed))
                await self.publish()
            else:
                log.info("config file reloaded: nothing changed (version %d)", self.state.version)

    async def change(self, channel: str, changes: Mapping[str, Any]) -> tuple[int, list[str], bool]:
        """Validate, version, publish and wait for the holders' acks: (version, acked, changed).

        Raises KeyError, ConfigError, FixedFieldError (nothing changed) or AckTimeout (published).
        """
        async with self._change_lock:  # one version at a time, each built on the last
            config = self.state.propose(channel, changes)
            changed = self.state.commit(channel, config)
            version = self.state.channel_versions[channel]
            if changed:
                self.metrics.count("control.config_changes")
                log.info("config version %d: %s %s", version, channel, dict(changes))
                await self.publish()
        acked, missing = await self.wait_acks(channel, version, self.ack_timeout_s)
        if missing:
            self.metrics.count("control.ack_timeouts")
            raise AckTimeout(version, self.ack_timeout_s, missing, acked)
        return version, acked, changed

    async def wait_acks(self, channel: str, version: int, timeout_s: float) -> tuple[list[str], list[str]]:
        """(acked, missing) among the processes live now that hold `channel`, after at most `timeout_s`."""
        required = self.state.holders(channel, time.time_ns())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            acked = self.state.acked(required, version)
            remaining = deadline - loop.time()
            if acked == required or remaining <= 0:
                return sorted(acked), sorted(required - acked)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seen.wait(), remaining)
