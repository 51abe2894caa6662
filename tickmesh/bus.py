"""The control bus: versioned config from the control process, status and acks back.

control PUB `control_config` --ConfigState--> every process with live settings (SUB): BusClient
every mesh process (PUSH) --Status--> control PULL `control_status`: Reporter (BusClient is one)

A process answers a new config version with an immediate Status carrying that
version: that Status is its acknowledgement. Control re-publishes the current
state every second, so a process that starts late converges.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Mapping
from typing import TypeVar

import msgspec
import zmq
from msgspec import Struct

from tickmesh.boundary import Rejection, decode_single, reject
from tickmesh.cli import version
from tickmesh.config import AggregatorConfig, Channels, Config
from tickmesh.curve import security_counters
from tickmesh.metrics import Metrics
from tickmesh.schema import WIRE_VERSION
from tickmesh.sockets import make_socket

SOFTWARE = version()

CONFIG_TOPIC = b"config"
MAX_SERIES = 4_000  # counters, and gauges, per report (control refuses a report of over 10,000)
V = TypeVar("V", int, float)


class ConfigState(Struct, tag="config", array_like=True, frozen=True):
    """The live configuration at `version` (0 = what the processes started with)."""

    version: int
    channels: Channels
    aggregator: AggregatorConfig


class Status(Struct, tag="status", frozen=True):
    """One process's report: identity, config version applied, metrics."""

    process: str  # unique in the mesh: router, worker.tick.0, aggregator
    role: str
    channels: list[str]  # channels whose config this process applies
    host: str
    pid: int
    config_version: int
    started_ns: int
    time_ns: int
    counters: dict[str, int]
    gauges: dict[str, float]
    software: str = ""  # the package version this process runs
    wire: int = 0  # its wire schema version (tickmesh.schema.WIRE_VERSION)


config_decoder = msgspec.msgpack.Decoder(ConfigState)
status_decoder = msgspec.msgpack.Decoder(Status)
_encoder = msgspec.msgpack.Encoder()


def encode_config(state: ConfigState) -> list[bytes]:
    return [CONFIG_TOPIC, _encoder.encode(state)]


def encode_status(status: Status) -> bytes:
    return _encoder.encode(status)


def bounded(series: Mapping[str, V], dropped: str) -> dict[str, V]:
    """At most MAX_SERIES of a report's counters or gauges, plus how many were left out under
    `dropped`: a label that multiplies (a bug, or input that slipped past validation) can
    neither grow a report without bound nor get the whole report refused by control."""
    if len(series) <= MAX_SERIES:
        return dict(series)
    kept = dict(itertools.islice(series.items(), MAX_SERIES))  # the oldest names: the steady ones
    kept[dropped] = len(series) - MAX_SERIES  # type: ignore[assignment]
    return kept


class Reporter:
    """A mesh process's status reports to control. Every process reports; one with live settings is a
    BusClient, which also receives the config. A process without them (a worker supervisor, the journal)
    never subscribes to the config stream: no socket, no messages queued unread."""

    def __init__(
        self,
        ctx: zmq.Context,  # type: ignore[type-arg]
        config: Config,
        *,
        process: str,
        role: str,
        metrics: Metrics,
    ) -> None:
        self.process, self.role, self.metrics = process, role, metrics
        self.channels: list[str] = []  # the channels whose live settings it applies: a BusClient's only
        self.ctx = ctx  # its CURVE handshake counters (if any) are reported with the metrics
        self.version = 0  # the config version applied: the one it started with, unless a BusClient received one
        self.interval_ns = int(config.control.status_interval_s * 1e9)
        self._next_report = 0
        self.push = make_socket(ctx, zmq.PUSH, connect=config.endpoints.control_status, hwm=100, immediate=True)
        self._host = socket.gethostname()

    @property
    def due(self) -> bool:
        """Whether `report` would send a Status now (so gauges worth computing for it)."""
        return time.time_ns() >= self._next_report

    @property
    def report_in_s(self) -> float:
        """Seconds until a Status is due (0 when it is)."""
        return max(0.0, (self._next_report - time.time_ns()) / 1e9)

    def report(self, *, force: bool = False) -> None:
        """Send a Status if one is due (or `force`d, as the ack of a new version)."""
        now = time.time_ns()
        if not force and now < self._next_report:
            return
        self._next_report = now + self.interval_ns
        self.metrics.counters.update(security_counters(self.ctx))
        status = Status(
            process=self.process,
            role=self.role,
            channels=self.channels,
            host=self._host,
            pid=os.getpid(),
            config_version=self.version,
            started_ns=self.metrics.started_ns,
            time_ns=now,
            counters=bounded(self.metrics.counters, "bus.counters_dropped"),
            gauges=bounded(self.metrics.snapshot_gauges(), "bus.gauges_dropped"),
            software=SOFTWARE,
            wire=WIRE_VERSION,
        )
        try:
            self.push.send(encode_status(status), zmq.NOBLOCK)
        except zmq.Again:  # no control process listening: status is a snapshot, the next one replaces it
            self.metrics.count("bus.status_unsent")

    def close(self) -> None:
        self.push.close(0)


class BusClient(Reporter):
    """A mesh process with live settings: receive config, report status."""

    def __init__(
        self,
        ctx: zmq.Context,  # type: ignore[type-arg]
        config: Config,
        *,
        process: str,
        role: str,
        channels: list[str],
        metrics: Metrics,
    ) -> None:
        super().__init__(ctx, config, process=process, role=role, metrics=metrics)
        self.channels = channels
        self.sub = make_socket(ctx, zmq.SUB, connect=config.endpoints.control_config, hwm=100)
        self.sub.setsockopt(zmq.SUBSCRIBE, CONFIG_TOPIC)

    def receive(self, config: Config) -> Config | None:
        """Read one config message; the new Config if its version is not the one applied, else None."""
        try:
            frames = self.sub.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        state = decode_single(config_decoder, frames[1:])  # [topic, payload]
        if isinstance(state, Rejection):
            reject(self.metrics, "bus", state)
            return None
        if state.version == self.version:
            return None  # the state control re-publishes every second; it changes only with a version
        self.version = state.version  # whatever control publishes is the live config: it is the authority
        return msgspec.structs.replace(config, channels=state.channels, aggregator=state.aggregator)

    def close(self) -> None:
        self.sub.close(0)
        super().close()
