"""Config and mesh views (control/state.py) to the protobuf messages of tickmesh.control.v1."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from control.state import COUNTER_MAX, ChannelView, MeshView, ProcessView, labelled, rule_text
from control.v1 import control_pb2 as pb
from tickmesh.config import Config

DATA_TYPES = {"tick": "trade", "ohlcv": "bar", "fmv": "fair_market_value"}
CHANNEL_COUNTERS = ("received", "routed", "processed", "batches", "conflated", "dropped_oldest", "paused_dropped",
                    "resent", "failed")  # fmt: skip
CHANNEL_GAUGES = {  # proto field -> metric name without the channel prefix
    "queue_depth": "queue_depth",
    "unacked": "unacked",
    "processing_mean_us": "processing_mean_us",
    "processing_p99_us": "processing_p99_us",
    "latency_p50_us": "latency_p50_us",
    "latency_p99_us": "latency_p99_us",
    "latency_p999_us": "latency_p99.9_us",
}


def channel_message(config: Config, name: str, version: int) -> pb.Channel:
    """One channel's live config; `version` is the config version that last changed it."""
    ch = config.channel(name)
    rules = msgspec.to_builtins(ch.rules)
    return pb.Channel(
        name=name,
        data_type=DATA_TYPES[name],
        priority=ch.priority,
        batch_size=ch.batch_size,
        timeout_ms=ch.timeout_ms,
        paused=ch.paused,
        shards=ch.shards,
        overflow=ch.overflow,
        hwm=ch.hwm,
        buffer=ch.buffer,
        rules={k: rule_text(v) for k, v in rules.items()},
        config_version=version,
    )


def channel_metrics(view: ChannelView) -> pb.ChannelMetrics:
    rejected = labelled(view.counters, "rejected")
    events = labelled(view.counters, "events")
    msg = pb.ChannelMetrics(
        channel=view.name,
        rejected_total=_total(rejected),
        rejected=rejected,
        events_total=_total(events),
        events=events,
        ignored=labelled(view.counters, "ignored"),
        counters=view.counters,
        gauges=view.gauges,
    )
    for field in CHANNEL_COUNTERS:
        setattr(msg, field, view.counter(field))
    for field, name in CHANNEL_GAUGES.items():
        setattr(msg, field, view.gauge(name))
    return msg


def process_info(p: ProcessView, now_ns: int) -> pb.ProcessInfo:
    return pb.ProcessInfo(
        process=p.process,
        role=p.role,
        host=p.host,
        pid=p.pid,
        channels=p.channels,
        config_version=p.config_version,
        started_ns=p.started_ns,
        last_heartbeat_ns=p.heartbeat_ns,
        heartbeat_age_s=max(0.0, (now_ns - p.seen_ns) / 1e9),
        live=p.live,
        rss_bytes=p.gauges.get("process.rss_bytes", 0.0),
        cpu_percent=p.gauges.get("process.cpu_percent", 0.0),
        uptime_s=p.gauges.get("process.uptime_s", 0.0),
        counters=p.counters,
        gauges=p.gauges,
        software=p.software,
        wire=p.wire,
        clock_offset_ms=p.clock_offset_ns / 1e6,
    )


INPUT_SOCKETS = ("acks", "sync", "events", "replay", "stream", "bus")  # tickmesh/boundary.py's socket names


def input_rejected(counters: Mapping[str, int]) -> dict[str, int]:
    """`{"acks.bad_utf8": n, ...}` from the `<socket>.rejected.<reason>` counters of the decode boundary."""
    out = {}
    for socket in INPUT_SOCKETS:
        out.update({f"{socket}.{reason}": n for reason, n in labelled(counters, f"{socket}.rejected").items()})
    return out


def snapshot_message(view: MeshView) -> pb.MetricsSnapshot:
    deduplicated = labelled(view.counters, "deduplicated")
    aggregator = pb.AggregatorMetrics(
        published=view.counters.get("published", 0),
        received=view.counters.get("received", 0),
        deduplicated_total=_total(deduplicated),
        deduplicated=deduplicated,
        subscribers=view.gauges.get("subscribers", 0.0),
        subscriber_gaps=view.counters.get("subscribers.gaps", 0),
        subscriber_missed=view.counters.get("subscribers.missed", 0),
        input_rejected=input_rejected(view.counters),
    )
    return pb.MetricsSnapshot(
        time_ns=view.time_ns,
        config_version=view.version,
        channels=[channel_metrics(c) for c in view.channels],
        aggregator=aggregator,
        ingest_rejected=labelled(view.counters, "ingest.rejected"),
        processes=[process_info(p, view.time_ns) for p in view.processes],
        counters=view.counters,
        gauges=view.gauges,
    )


def _total(counts: dict[str, int]) -> int:
    return min(sum(counts.values()), COUNTER_MAX)
