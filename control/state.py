"""The mesh as control sees it: status reports merged, config versions, acks, per-channel metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from control.clock import ClockOffset
from control.store import ConfigStore
from tickmesh.config import CHANNELS, Config, update_channel

if TYPE_CHECKING:  # only the attributes are used: this module stays free of zmq
    from tickmesh.bus import Status

LIVE_INTERVALS = 3  # a process is live if it reported within this many status intervals
LIVE_FLOOR_S = 2.0
FIXED_FIELDS = frozenset({"shards", "hwm"})  # sockets and processes are built from them at start
COUNTER_MAX = 2**63 - 1  # the proto's int64
MAX_PROCESSES = 1_024  # bounded: reports under new names past this are refused
MAX_METRICS = 10_000  # counters + gauges in one report


class FixedFieldError(ValueError):
    """A field that cannot change while the mesh runs."""


class BadStatus(ValueError):
    """A status report control cannot use (out-of-range numbers, too many processes)."""


@dataclass(frozen=True)
class ProcessView:
    """One process as of its last status report."""

    process: str
    role: str
    host: str
    pid: int
    channels: tuple[str, ...]
    config_version: int
    started_ns: int
    heartbeat_ns: int  # the process's own clock
    seen_ns: int  # control's clock when the report arrived
    live: bool
    counters: Mapping[str, int]
    gauges: Mapping[str, float]
    software: str  # the package version it runs ("" from a process too old to say)
    wire: int  # its wire schema version (0: too old to say)
    clock_offset_ns: int  # its clock minus control's, estimated (control/clock.py)


@dataclass(frozen=True)
class ChannelView:
    """One channel's counters (summed) and gauges (combined), keyed without the channel prefix."""

    name: str
    counters: Mapping[str, int]
    gauges: Mapping[str, float]

    def counter(self, name: str) -> int:
        return self.counters.get(name, 0)

    def gauge(self, name: str) -> float:
        return self.gauges.get(name, 0.0)


@dataclass(frozen=True)
class MeshView:
    """A snapshot of the whole mesh."""

    time_ns: int
    version: int
    channels: tuple[ChannelView, ...]
    counters: Mapping[str, int]  # names without a channel prefix
    gauges: Mapping[str, float]
    processes: tuple[ProcessView, ...]


def labelled(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    """`{label: n}` for every `prefix.label` counter (`rejected.nan_price` -> `nan_price`)."""
    head = prefix + "."
    return {k[len(head) :]: v for k, v in counters.items() if k.startswith(head)}


def split_channel(name: str) -> tuple[str | None, str]:
    """(`tick`, `received`) for `tick.received`; (None, name) when it has no channel prefix."""
    head, dot, rest = name.partition(".")
    return (head, rest) if dot and head in CHANNELS and rest else (None, name)


def combine_gauge(name: str, values: list[float]) -> float:
    """Latencies (`*_us`) take the slowest process, everything else (depths, subscribers) the sum."""
    return max(values) if name.endswith("_us") else sum(values)


def rule_text(value: Any) -> str:
    """A config value as UpdateChannel accepts it back: true/false, numbers, text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class _Entry:
    status: Status
    seen_ns: int
    clock: ClockOffset


class MeshState:
    """Live config and version, the latest Status of every process, counters of restarted ones."""

    def __init__(self, config: Config, store: ConfigStore | None = None) -> None:
        """Start from `store`'s live config (control/store.py says which wins), else from `config`."""
        self.file_config, self.store = config, store
        if store is None:
            self.config, self.version, self.channel_versions = config, 0, dict.fromkeys(CHANNELS, 0)
        else:
            self.config, self.version, self.channel_versions = store.load(config)
        # at least LIVE_FLOOR_S: a process that misses a few fast reports on a busy machine is not gone
        self.live_ns = int(max(LIVE_INTERVALS * config.control.status_interval_s, LIVE_FLOOR_S) * 1e9)
        self._entries: dict[str, _Entry] = {}
        self._retired: defaultdict[str, int] = defaultdict(int)  # counts of earlier incarnations

    # -- status reports ------------------------------------------------------
    def apply_status(self, status: Status, now_ns: int) -> None:
        """Record a report: a measurement, never a source of configuration (that comes only from gRPC
        changes and the store). Raises BadStatus for numbers out of range or one process too many."""
        _check(status)
        old = self._entries.get(status.process)
        if old is None and len(self._entries) >= MAX_PROCESSES:
            self._forget_dead(now_ns)
            if len(self._entries) >= MAX_PROCESSES:
                raise BadStatus(f"more than {MAX_PROCESSES} processes; {status.process!r} ignored")
        same = old is not None and _incarnation(old.status) == _incarnation(status)
        if old is not None and not same:
            self._retire(old.status)
        clock = old.clock if old is not None and same else ClockOffset()
        clock.add(status.time_ns, now_ns)
        self._entries[status.process] = _Entry(status, now_ns, clock)

    def _retire(self, status: Status) -> None:
        for name, value in status.counters.items():
            self._retired[name] += _clamp(value)

    def _forget_dead(self, now_ns: int) -> None:
        for name, e in list(self._entries.items()):
            if now_ns - e.seen_ns > self.live_ns:
                self._retire(e.status)
                del self._entries[name]

    def holders(self, channel: str, now_ns: int) -> set[str]:
        """Live processes that apply `channel`'s config: the ones a change must be acked by."""
        return {
            name
            for name, e in self._entries.items()
            if channel in e.status.channels and now_ns - e.seen_ns <= self.live_ns
        }

    def acked(self, processes: Iterable[str], version: int) -> set[str]:
        """Those of `processes` whose last report says they applied `version` or a later one that this
        control issued (a higher number from before a lost store, or a forged one, acknowledges nothing)."""
        return {
            p for p in processes if (e := self._entries.get(p)) and version <= e.status.config_version <= self.version
        }

    # -- configuration -------------------------------------------------------
    def propose(self, channel: str, changes: Mapping[str, Any]) -> Config:
        """The config with `changes` applied to `channel`, validated; the state is not changed.

        Raises KeyError (unknown channel), FixedFieldError or ConfigError (bad field or value).
        """
        self.config.channel(channel)  # KeyError first: an unknown channel is NOT_FOUND whatever the keys
        fixed = sorted(FIXED_FIELDS.intersection(changes))
        if fixed:
            raise FixedFieldError(f"`{fixed[0]}` of channel {channel} cannot change while the mesh runs")
        return update_channel(self.config, channel, changes)

    def reload(self, file_config: Config) -> list[str]:
        """The config file was read again (SIGHUP): its channel and aggregator settings become the live
        config as one new version (nothing changes if they already are); the channels that changed."""
        changed = [ch for ch in CHANNELS if file_config.channel(ch) != self.config.channel(ch)]
        aggregator = file_config.aggregator != self.config.aggregator
        self.file_config = file_config
        if changed or aggregator:
            self.config = msgspec.structs.replace(
                self.config, channels=file_config.channels, aggregator=file_config.aggregator
            )
            self.version += 1
            self.channel_versions.update(dict.fromkeys(changed, self.version))
        if self.store is not None:
            self.store.save(self.config, self.version, self.channel_versions, self.file_config)
        return changed + (["aggregator"] if aggregator else [])

    def commit(self, channel: str, config: Config) -> bool:
        """Adopt `config` (from `propose`) as version + 1; False, and no new version, if nothing changed."""
        if config == self.config:
            return False
        self.config = config
        self.version += 1
        self.channel_versions[channel] = self.version
        if self.store is not None:
            self.store.save(config, self.version, self.channel_versions, self.file_config)
        return True

    # -- views ---------------------------------------------------------------
    def processes(self, now_ns: int) -> tuple[ProcessView, ...]:
        return tuple(_process_view(e, now_ns - e.seen_ns <= self.live_ns) for _, e in sorted(self._entries.items()))

    def view(self, now_ns: int, channel: str | None = None) -> MeshView:
        """Counters summed over every process (live or not, restarts included), gauges over live ones."""
        processes = self.processes(now_ns)
        counters: defaultdict[str, int] = defaultdict(int, self._retired)
        gauge_values: defaultdict[str, list[float]] = defaultdict(list)
        for p in processes:
            for name, count in p.counters.items():
                counters[name] += count
            if p.live:
                for name, gauge in p.gauges.items():
                    if not name.startswith("process."):
                        gauge_values[name].append(gauge)
        gauges = {name: combine_gauge(name, values) for name, values in gauge_values.items()}
        return MeshView(
            time_ns=now_ns,
            version=self.version,
            channels=tuple(_channel_view(ch, counters, gauges) for ch in CHANNELS if channel in (None, ch)),
            counters={k: min(v, COUNTER_MAX) for k, v in counters.items() if split_channel(k)[0] is None},
            gauges={k: v for k, v in gauges.items() if split_channel(k)[0] is None},
            processes=processes,
        )


def _channel_view(channel: str, counters: Mapping[str, int], gauges: Mapping[str, float]) -> ChannelView:
    own_counters, own_gauges = {}, {}
    for name, value in counters.items():
        ch, rest = split_channel(name)
        if ch == channel:
            own_counters[rest] = min(value, COUNTER_MAX)
    for name, gauge in gauges.items():
        ch, rest = split_channel(name)
        if ch == channel:
            own_gauges[rest] = gauge
    return ChannelView(channel, own_counters, own_gauges)


def _process_view(entry: _Entry, live: bool) -> ProcessView:
    s = entry.status
    return ProcessView(
        process=s.process,
        role=s.role,
        host=s.host,
        pid=s.pid,
        channels=tuple(s.channels),
        config_version=s.config_version,
        started_ns=s.started_ns,
        heartbeat_ns=s.time_ns,
        seen_ns=entry.seen_ns,
        live=live,
        counters={k: _clamp(v) for k, v in s.counters.items()},
        gauges=dict(s.gauges),
        software=s.software[:64],
        wire=s.wire,
        clock_offset_ns=entry.clock.offset_ns,
    )


def _clamp(value: int) -> int:
    return max(0, min(value, COUNTER_MAX))


def _incarnation(status: Status) -> tuple[int, int, str]:
    return status.pid, status.started_ns, status.host


def _check(status: Status) -> None:
    for field in ("pid", "config_version", "started_ns", "time_ns"):
        value = getattr(status, field)
        if not 0 <= value <= COUNTER_MAX:
            raise BadStatus(f"{status.process!r}: {field} {value} out of range")
    if not status.process or len(status.process) > 128:
        raise BadStatus(f"process name must be 1..128 characters, got {len(status.process)}")
    if len(status.counters) + len(status.gauges) > MAX_METRICS:
        raise BadStatus(f"{status.process!r}: more than {MAX_METRICS} metrics in one report")
