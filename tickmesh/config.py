"""Configuration in one place: frozen Structs, built-in defaults, one TOML file, env overrides."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from tickmesh.endpoints import ROUTED, Endpoints

CHANNELS: tuple[str, ...] = ("tick", "ohlcv", "fmv")
Seconds = Annotated[float, Meta(ge=0, le=86_400)]
Pct = Annotated[float, Meta(ge=0, le=1_000)]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


class TickRules(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """TICK detectors: session high/low, trend, surge (docs/events.md has every rule)."""

    enabled: bool = True
    session_start_s: Annotated[int, Meta(ge=0, lt=86_400)] = 0  # UTC second a session starts
    # Price bands: band k holds prices below bandk_below; band 6 holds the rest. A move passes
    # a band's gate when it reaches EITHER its percent OR its dollar minimum.
    band1_below: Annotated[float, Meta(gt=0, lt=1e9)] = 1.0
    band2_below: Annotated[float, Meta(gt=0, lt=1e9)] = 5.0
    band3_below: Annotated[float, Meta(gt=0, lt=1e9)] = 25.0
    band4_below: Annotated[float, Meta(gt=0, lt=1e9)] = 100.0
    band5_below: Annotated[float, Meta(gt=0, lt=1e9)] = 500.0
    band1_high_low_pct: Pct = 0.20
    band1_high_low_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.005
    band1_surge_pct: Pct = 7.0
    band1_surge_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.05
    band2_high_low_pct: Pct = 0.15
    band2_high_low_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.01
    band2_surge_pct: Pct = 5.0
    band2_surge_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.10
    band3_high_low_pct: Pct = 0.10
    band3_high_low_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.02
    band3_surge_pct: Pct = 4.0
    band3_surge_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.25
    band4_high_low_pct: Pct = 0.08
    band4_high_low_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.05
    band4_surge_pct: Pct = 3.0
    band4_surge_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.75
    band5_high_low_pct: Pct = 0.05
    band5_high_low_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.10
    band5_surge_pct: Pct = 2.5
    band5_surge_usd: Annotated[float, Meta(ge=0, le=1e6)] = 1.50
    band6_high_low_pct: Pct = 0.05
    band6_high_low_usd: Annotated[float, Meta(ge=0, le=1e6)] = 0.10
    band6_surge_pct: Pct = 2.0
    band6_surge_usd: Annotated[float, Meta(ge=0, le=1e6)] = 10.0
    # high / low
    high_low_enabled: bool = True
    cooldown_s: Seconds = 1.0  # minimum event time between two highs (or two lows) of a ticker
    # trend: score = sum of weight_k x (% move over window k); windows are whole buckets
    trend_enabled: bool = True
    trend_window1_s: Annotated[int, Meta(ge=1, le=3_600)] = 180
    trend_window2_s: Annotated[int, Meta(ge=1, le=3_600)] = 360
    trend_window3_s: Annotated[int, Meta(ge=1, le=3_600)] = 600
    trend_weight1: Annotated[float, Meta(ge=0, le=100)] = 0.3
    trend_weight2: Annotated[float, Meta(ge=0, le=100)] = 0.4
    trend_weight3: Annotated[float, Meta(ge=0, le=100)] = 0.3
    trend_bucket_s: Annotated[int, Meta(ge=1, le=600)] = 5  # window resolution (memory vs precision)
    trend_min_history_s: Seconds = 180.0
    trend_min_trades: Annotated[int, Meta(ge=1, le=100_000)] = 10  # in each window
    trend_threshold: Annotated[float, Meta(gt=0, le=100)] = 0.3
    trend_strong: Annotated[float, Meta(ge=0, le=100)] = 0.6
    trend_interval_s: Seconds = 60.0
    # surge
    surge_enabled: bool = True
    surge_lookback_s: Annotated[float, Meta(gt=0, le=3_600)] = 5.0
    surge_resolution_ms: Annotated[int, Meta(ge=1, le=60_000)] = 250  # baseline buffer slot width
    surge_volume_window_s: Annotated[float, Meta(gt=0, le=3_600)] = 60.0
    surge_cooldown_s: Seconds = 60.0

    def __post_init__(self) -> None:
        edges = [getattr(self, f"band{k}_below") for k in range(1, 6)]
        for k in range(1, 5):
            if not edges[k - 1] < edges[k]:
                raise ValueError(f"tick rules: band{k + 1}_below must be above band{k}_below")
        windows = (self.trend_window1_s, self.trend_window2_s, self.trend_window3_s)
        if not windows[0] < windows[1] < windows[2]:
            raise ValueError("tick rules: trend_window1_s < trend_window2_s < trend_window3_s is required")
        if any(w % self.trend_bucket_s for w in windows):
            raise ValueError("tick rules: every trend_window*_s must be a multiple of trend_bucket_s")
        if self.surge_lookback_s * 1000 / self.surge_resolution_ms > 1_000:
            raise ValueError("tick rules: surge_lookback_s / surge_resolution_ms must be at most 1000 slots")
        if self.surge_volume_window_s / self.surge_lookback_s > 1_000:
            raise ValueError("tick rules: surge_volume_window_s / surge_lookback_s must be at most 1000")


class OhlcvRules(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """OHLCV detectors, per bar: big move, close at high/low, volume surge, trend."""

    enabled: bool = True
    big_move_pct: Pct = 2.0
    close_at_extreme_pct: Pct = 1.0
    volume_surge_ratio: Annotated[float, Meta(gt=0, le=1_000)] = 3.0
    volume_min_bars: Annotated[int, Meta(ge=1, le=1_000)] = 5
    volume_window: Annotated[int, Meta(ge=1, le=1_000)] = 10
    detect_trends: bool = False
    trend_bars: Annotated[int, Meta(ge=2, le=1_000)] = 5
    trend_min_pct: Pct = 1.0
    # a bar starting more than this many bar lengths after the ticker's last one starts a new session
    session_gap_bars: Annotated[int, Meta(ge=1, le=1_000_000)] = 10


class FmvRules(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """FMV detector: deviation of fair value from the market price."""

    enabled: bool = True
    confidence_min: Annotated[float, Meta(ge=0, le=1)] = 0.8
    deviation_pct: Pct = 1.0
    cooldown_s: Seconds = 60.0


Overflow = Literal["block", "conflate", "drop_oldest"]


class ChannelConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What every channel has: priority, batching, sharding, flow control."""

    priority: Annotated[int, Meta(ge=1, le=9)]
    batch_size: Annotated[int, Meta(ge=1, le=10_000)]
    timeout_ms: Annotated[float, Meta(ge=0, le=60_000)]
    shards: Annotated[int, Meta(ge=1, le=64)] = 1
    paused: bool = False
    overflow: Overflow = "conflate"
    hwm: Annotated[int, Meta(ge=1, le=1_000_000)] = 1_000  # messages per socket
    buffer: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000  # records held by the router
    # circuit breaker: trips when this share of at least breaker_min_records recent records failed
    breaker_failure_ratio: Annotated[float, Meta(gt=0, le=1)] = 0.5
    breaker_min_records: Annotated[int, Meta(ge=1, le=1_000_000)] = 20
    breaker_cooloff_s: Seconds = 30.0


class TickChannel(ChannelConfig, frozen=True, kw_only=True):
    priority: Annotated[int, Meta(ge=1, le=9)] = 1
    batch_size: Annotated[int, Meta(ge=1, le=10_000)] = 1
    timeout_ms: Annotated[float, Meta(ge=0, le=60_000)] = 10.0
    overflow: Overflow = "block"
    rules: TickRules = TickRules()


class OhlcvChannel(ChannelConfig, frozen=True, kw_only=True):
    priority: Annotated[int, Meta(ge=1, le=9)] = 2
    batch_size: Annotated[int, Meta(ge=1, le=10_000)] = 100
    timeout_ms: Annotated[float, Meta(ge=0, le=60_000)] = 100.0
    rules: OhlcvRules = OhlcvRules()


class FmvChannel(ChannelConfig, frozen=True, kw_only=True):
    priority: Annotated[int, Meta(ge=1, le=9)] = 3
    batch_size: Annotated[int, Meta(ge=1, le=10_000)] = 50
    timeout_ms: Annotated[float, Meta(ge=0, le=60_000)] = 500.0
    rules: FmvRules = FmvRules()


class Channels(Struct, frozen=True, forbid_unknown_fields=True):
    tick: TickChannel = TickChannel()
    ohlcv: OhlcvChannel = OhlcvChannel()
    fmv: FmvChannel = FmvChannel()


class RouterConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_message_bytes: Annotated[int, Meta(ge=1_024, le=256 << 20)] = 1 << 20  # larger ingest frames are rejected
    ingest_hwm: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    window: Annotated[int, Meta(ge=2, le=10_000_000)] = 200_000  # unacknowledged records per stream
    drain_limit: Annotated[int, Meta(ge=1, le=1_000_000)] = 2_000  # ingest messages per loop turn
    # records stamped further ahead of the router's clock are rejected (future_timestamp): one bad
    # clock cannot move a ticker's session forward; history (any time in the past) is unaffected
    max_future_s: Annotated[float, Meta(ge=1, le=86_400 * 366)] = 300.0
    # routers the producers partition tickers over (by a stable hash); router i's endpoints are
    # derived from the base ones (Endpoints.for_router); change it only with a whole-mesh restart
    count: Annotated[int, Meta(ge=1, le=16)] = 1


class StateConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where processes keep what must survive a crash (relative paths: from the state root, see state_root)."""

    dir: str = ".tickmesh/state"  # worker checkpoints
    checkpoint_s: Annotated[float, Meta(gt=0, le=3_600)] = 1.0
    dead_letters: str = ".tickmesh/dead-letters"  # one JSON-lines file per process
    dead_letter_bytes: Annotated[int, Meta(ge=4_096, le=1 << 30)] = 1 << 20  # per file, then rotated once


class AggregatorConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dedup_window_s: Seconds = 60.0  # cross-source high/low window, event time
    dedup_capacity: Annotated[int, Meta(ge=1_000, le=10_000_000)] = 200_000  # ids remembered
    max_event_age_s: Seconds = 120.0  # wall-clock staleness limit; 0 turns it off
    heartbeat_s: Annotated[float, Meta(gt=0, le=60)] = 1.0
    replay_size: Annotated[int, Meta(ge=0, le=1_000_000)] = 10_000  # events kept for late joiners
    replay_max_bytes: Annotated[int, Meta(ge=4_096, le=256 << 20)] = 1 << 20  # per replay reply (then `more`)
    pub_hwm: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000


class ControlConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    token_file: str = ".tickmesh/admin.token"  # relative to the state root
    tls_cert: str = ""
    tls_key: str = ""
    ack_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 3.0
    status_interval_s: Annotated[float, Meta(gt=0, le=60)] = 1.0  # how often processes report


class SecurityConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """CURVE on the zmq tcp links; `auto` turns it on when any endpoint is a non-loopback tcp address."""

    curve: Literal["auto", "on", "off"] = "auto"
    keys_dir: str = ".tickmesh/keys"  # relative to the state root; TICKMESH_KEYS_DIR overrides
    # `curve`: the producer-facing sockets (ingest, sync) take only producers whose public keys are
    # in keys_dir/authorized, even on loopback with CURVE otherwise off (docs/security.md)
    ingest: Literal["open", "curve"] = "open"


CpuId = Annotated[int, Meta(ge=0, le=4_095)]


class CpuSets(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The CPUs each role's processes run on (a channel's name: its shards); empty: wherever the OS puts them."""

    router: tuple[CpuId, ...] = ()
    aggregator: tuple[CpuId, ...] = ()
    tick: tuple[CpuId, ...] = ()
    ohlcv: tuple[CpuId, ...] = ()
    fmv: tuple[CpuId, ...] = ()


class ProcessConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How processes stop and restart (the stop grace; at most restart_budget shard restarts per
    restart_window_s) and how they are scheduled (tickmesh/sched.py, docs/deploy.md "Scheduling")."""

    restart_budget: Annotated[int, Meta(ge=0, le=10_000)] = 5  # then it stops its shards and exits 3
    restart_window_s: Annotated[float, Meta(gt=0, le=86_400)] = 60.0
    # SIGTERM → exit within this: honcho kills after 5 s; set systemd's TimeoutStopSec= or Kubernetes'
    # terminationGracePeriodSeconds and this together (every drain below is derived from it)
    stop_timeout_s: Annotated[float, Meta(ge=2, le=3_600)] = 5.0
    # Opt-in: the P1 path (router, priority-1 channels' shards, aggregator) runs SCHED_FIFO at this
    # priority where permitted; at most 49, below the kernel's interrupt threads (50)
    realtime: bool = False
    realtime_priority: Annotated[int, Meta(ge=1, le=49)] = 10
    # Opt-in, host-wide: while the P1 path runs, every CPU wakes within this many µs (the kernel's
    # CPU latency QoS, /dev/cpu_dma_latency; root only). 0: idle CPUs poll instead of sleeping
    cpu_latency_us: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    # Opt-in: the P1 path runs in time slices of this many µs (the kernel's custom slice, Linux 6.12+;
    # any user): a P1 process that wakes preempts a normal-class process in a longer slice at once
    slice_us: Annotated[int, Meta(ge=100, le=100_000)] | None = None
    cpus: CpuSets = CpuSets()

    def stop_budget(self, margin_s: float) -> float:
        """How long a stopping step may take so that the process still exits `margin_s` before the grace."""
        return max(0.5, self.stop_timeout_s - margin_s)


class JournalConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The event journal (docs/journal.md): where every published event is kept, and for how long."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: str = ""  # sqlite file; empty = journal.sqlite3 in state.dir
    dsn: str = ""  # postgres; TICKMESH_JOURNAL_DSN overrides (keep secrets out of the file)
    batch_size: Annotated[int, Meta(ge=1, le=100_000)] = 10_000  # rows per transaction at most
    flush_ms: Annotated[float, Meta(ge=0, le=60_000)] = 50.0  # a partial batch is written after this
    retention_days: Annotated[float, Meta(ge=0, le=36_500)] = 0.0  # 0 = keep forever
    max_rows: Annotated[int, Meta(ge=0, le=10_000_000_000)] = 0  # 0 = no limit
    run: Annotated[str, Meta(max_length=64, pattern=r"^[A-Za-z0-9._:\-]*\Z")] = ""  # tags every stored event


class WebConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """tickmesh-web (docs/web.md): where it listens and how much it keeps per browser."""

    listen: Annotated[str, Meta(pattern=r"^[^\s:/]+:\d{1,5}\Z")] = "127.0.0.1:8090"  # off loopback: token for reads
    queue: Annotated[int, Meta(ge=10, le=1_000_000)] = 5_000  # events queued per browser, then dropped and counted
    ring: Annotated[int, Meta(ge=0, le=1_000_000)] = 5_000  # recent events kept for new pages and ticker history
    poll_s: Annotated[float, Meta(ge=0.1, le=60)] = 1.0  # how often control's metrics are read
    history_s: Annotated[float, Meta(ge=10, le=3_600)] = 300.0  # how long the cards' latency charts reach back


class Config(Struct, frozen=True, forbid_unknown_fields=True):
    endpoints: Endpoints = Endpoints()
    channels: Channels = Channels()
    router: RouterConfig = RouterConfig()
    state: StateConfig = StateConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    control: ControlConfig = ControlConfig()
    security: SecurityConfig = SecurityConfig()
    process: ProcessConfig = ProcessConfig()
    journal: JournalConfig = JournalConfig()
    web: WebConfig = WebConfig()

    def __post_init__(self) -> None:
        if self.router.count > 1:
            _distinct_router_endpoints(self)

    def channel(self, name: str) -> TickChannel | OhlcvChannel | FmvChannel:
        if name not in CHANNELS:
            raise KeyError(name)
        return getattr(self.channels, name)  # type: ignore[no-any-return]


def router_endpoints(config: Config) -> list[Endpoints]:
    """Each router's endpoints, router 0 first (the base endpoints)."""
    return [config.endpoints.for_router(i) for i in range(config.router.count)]


def _distinct_router_endpoints(config: Config) -> None:
    """With several routers, no derived endpoint may be another's (a bind would fail at start)."""
    seen: dict[str, str] = {}
    for name in Endpoints.__struct_fields__:
        if name not in ROUTED:
            seen[getattr(config.endpoints, name)] = f"endpoints.{name}"
    for i, ep in enumerate(router_endpoints(config)):
        for name in ROUTED:
            if name in CHANNELS:
                addresses = [ep.shard(name, s) for s in range(config.channel(name).shards)]
            else:
                addresses = [getattr(ep, name)]
            for address in addresses:
                if address in seen:
                    raise ValueError(
                        f"router.count = {config.router.count}: router {i}'s {name} endpoint {address} "
                        f"is also {seen[address]} (router i's ports are the base + 100 × i)"
                    )
                seen[address] = f"router {i}'s {name}"


def _convert(data: Mapping[str, Any], origin: str) -> Config:
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def config_path(flag: str | None, env: Mapping[str, str]) -> Path | None:
    """--config, else TICKMESH_CONFIG, else ./tickmesh.toml if present, else none."""
    if flag:
        return Path(flag)
    if env.get("TICKMESH_CONFIG"):
        return Path(env["TICKMESH_CONFIG"])
    local = Path("tickmesh.toml")
    return local if local.exists() else None


def state_root(flag: str | None, env: Mapping[str, str]) -> str | None:
    """--state-dir, else TICKMESH_STATE_DIR, else systemd's STATE_DIRECTORY (its first entry); None: the cwd."""
    if flag:
        return flag
    if env.get("TICKMESH_STATE_DIR"):
        return env["TICKMESH_STATE_DIR"]
    return env.get("STATE_DIRECTORY", "").split(":")[0] or None


def _rooted(config: Config, root: str | None) -> Config:
    """The config with every relative state path (state, dead letters, token, keys, and the unix
    sockets of the private links) taken from `root`."""
    if root is None:
        return config

    def at_root(path: str) -> str:
        return str(Path(root) / path) if path and not Path(path).is_absolute() else path

    def ipc_at_root(endpoint: str) -> str:
        return "ipc://" + at_root(endpoint[len("ipc://") :]) if endpoint.startswith("ipc://") else endpoint

    s, c, k, e = config.state, config.control, config.security, config.endpoints
    return msgspec.structs.replace(
        config,
        endpoints=msgspec.structs.replace(e, **{n: ipc_at_root(getattr(e, n)) for n in Endpoints.__struct_fields__}),
        state=msgspec.structs.replace(s, dir=at_root(s.dir), dead_letters=at_root(s.dead_letters)),
        control=msgspec.structs.replace(c, token_file=at_root(c.token_file)),
        security=msgspec.structs.replace(k, keys_dir=at_root(k.keys_dir)),
    )


def load_config(flag: str | None = None, env: Mapping[str, str] | None = None, state_dir: str | None = None) -> Config:
    """Defaults, then the TOML file, then TICKMESH_<ENDPOINT> variables (flags are applied by callers).

    Relative state paths are rooted at `state_dir`, else $TICKMESH_STATE_DIR, else
    $STATE_DIRECTORY (systemd's StateDirectory=), else the working directory.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = config_path(flag, env)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    origin = str(path) if path else "defaults"
    endpoints = dict(data.get("endpoints", {}))
    for name in Endpoints.__struct_fields__:
        value = env.get(f"TICKMESH_{name.upper()}")
        if value:
            endpoints[name] = value
            origin = f"{origin} + TICKMESH_{name.upper()}"
    if endpoints:
        data["endpoints"] = endpoints
    if env.get("TICKMESH_KEYS_DIR"):
        data["security"] = {**data.get("security", {}), "keys_dir": env["TICKMESH_KEYS_DIR"]}
        origin = f"{origin} + TICKMESH_KEYS_DIR"
    return _rooted(_convert(data, origin), state_root(state_dir, env))


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML for nested tables of scalars and lists of scalars: what `load_config` reads back."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v) if isinstance(v, str) else repr(v)  # a JSON string is a TOML basic string

    def emit(table: Mapping[str, Any], name: str) -> None:
        if name:
            lines.append(f"[{name}]")
        # TOML has no null: an unset setting (None) is left out, which reads back as unset
        lines.extend(f"{k} = {value(v)}" for k, v in table.items() if v is not None and not isinstance(v, Mapping))
        for k, v in table.items():
            if isinstance(v, Mapping):
                emit(v, f"{name}.{k}" if name else k)

    emit(data, "")
    return "\n".join(lines) + "\n"


def with_endpoints(config: Config, **endpoints: str | None) -> Config:
    """The config with the endpoints given on a command line (None leaves one as is)."""
    changes = {k: v for k, v in endpoints.items() if v}
    if not changes:
        return config
    return msgspec.structs.replace(config, endpoints=msgspec.structs.replace(config.endpoints, **changes))


def update_channel(config: Config, name: str, changes: Mapping[str, Any]) -> Config:
    """The config with `changes` applied to channel `name`, validated.

    Keys are channel fields (`batch_size`) or rule fields (`rules.big_move_pct`,
    or the bare rule name when it is unambiguous). Raises KeyError for an unknown
    channel and ConfigError naming the field and its allowed range.
    """
    channel = msgspec.to_builtins(config.channel(name))
    for key, value in changes.items():
        field = key.removeprefix("rules.")
        if key == "shards":
            raise ConfigError("`shards` cannot change live: restart the channel with the new count")
        if key in channel and key != "rules":
            channel[key] = value
        elif field in channel["rules"]:
            channel["rules"][field] = value
        else:
            raise ConfigError(f"unknown field `{key}` for channel {name}")
    data = msgspec.to_builtins(config)
    data["channels"][name] = channel
    try:  # not strict: values typed on a command line arrive as strings
        return msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(str(exc).replace("$.channels.", "")) from None
