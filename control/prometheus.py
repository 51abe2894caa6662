"""The mesh metrics in the Prometheus text format: a custom collector over the control state."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from control.convert import CHANNEL_COUNTERS, CHANNEL_GAUGES
from control.state import MeshView, labelled

log = logging.getLogger(__name__)
LABELLED = {  # channel counter -> label name, help
    "rejected": ("reason", "Channel records rejected, by reason"),
    "events": ("kind", "Events detected, by kind"),
    "ignored": ("reason", "Channel records a worker ignored, by reason"),
}
PERCENTILE = re.compile(r"^(?P<base>.+)_(?P<stat>mean|max|p[0-9.]+)_us$")
PROCESS_GAUGES = {
    "process.rss_bytes": ("tickmesh_process_rss_bytes", "Resident memory"),
    "process.cpu_percent": ("tickmesh_process_cpu_percent", "CPU use, percent of one core"),
    "process.uptime_s": ("tickmesh_process_uptime_seconds", "Seconds since the process started"),
}


class MeshCollector(Collector):
    """Asks `view` for a fresh MeshView on every scrape (from the HTTP server's thread)."""

    def __init__(self, view: Callable[[], MeshView]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        try:
            view = self.view()
        except Exception as exc:  # a failed scrape must not take the process down
            log.warning("prometheus scrape failed: %s", exc)
            return
        yield from families(view)


def families(view: MeshView) -> Iterator[Metric]:
    """Every metric of `view` as Prometheus families (typed names first, then the rest by name)."""
    yield from _channel_families(view)
    yield from _mesh_families(view)
    yield from _process_families(view)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _channel_families(view: MeshView) -> Iterator[Metric]:
    typed = {f: _counter(f"tickmesh_channel_{f}", f"Channel records: {f}", ["channel"]) for f in CHANNEL_COUNTERS}
    labelled_fams = {
        k: _counter(f"tickmesh_channel_{k}", doc, ["channel", label]) for k, (label, doc) in LABELLED.items()
    }
    gauges = {
        g: GaugeMetricFamily(f"tickmesh_channel_{g}", f"Channel {g}", labels=["channel"])
        for g in ("queue_depth", "unacked")
    }
    latency = GaugeMetricFamily(
        "tickmesh_channel_latency_microseconds",
        "Per-channel latency summaries in µs (slowest process): processing per batch, ingest to publish",
        labels=["channel", "stage", "stat"],
    )
    other_counters = _counter("tickmesh_channel_other", "Other channel counters by name", ["channel", "name"])
    other_gauges = GaugeMetricFamily(
        "tickmesh_channel_gauge", "Other channel gauges by name", labels=["channel", "name"]
    )
    known_gauges = set(CHANNEL_GAUGES.values())
    for ch in view.channels:
        for field, fam in typed.items():
            fam.add_metric([ch.name], ch.counter(field))
        for prefix, fam in labelled_fams.items():
            for label, n in sorted(labelled(ch.counters, prefix).items()):
                fam.add_metric([ch.name, label], n)
        for name, n in sorted(ch.counters.items()):
            if name not in typed and name.partition(".")[0] not in LABELLED:
                other_counters.add_metric([ch.name, name], n)
        for name, value in sorted(ch.gauges.items()):
            match = PERCENTILE.match(name)
            if name in gauges:
                gauges[name].add_metric([ch.name], value)
            elif match:
                latency.add_metric([ch.name, match["base"], match["stat"]], value)
            elif name not in known_gauges:
                other_gauges.add_metric([ch.name, name], value)
    yield from typed.values()
    yield from labelled_fams.values()
    yield from gauges.values()
    yield from (latency, other_counters, other_gauges)


def _mesh_families(view: MeshView) -> Iterator[Metric]:
    version = GaugeMetricFamily("tickmesh_config_version", "The mesh-wide config version")
    version.add_metric([], view.version)
    yield version
    named: dict[str, tuple[str, str, str]] = {  # counter prefix -> family, doc, label
        "deduplicated": ("tickmesh_deduplicated", "Duplicate events dropped by the aggregator", "reason"),
        "ingest.rejected": ("tickmesh_ingest_rejected", "Ingest records rejected before routing", "reason"),
    }
    fams: dict[str, Any] = {k: _counter(f, doc, [label]) for k, (f, doc, label) in named.items()}
    published = _counter("tickmesh_published", "Events published to subscribers", [])
    received = _counter("tickmesh_aggregator_received", "Events the aggregator received", [])
    other = _counter("tickmesh_counter", "Other mesh-wide counters by name", ["name"])
    for name, n in sorted(view.counters.items()):
        prefix = next((p for p in named if name.startswith(p + ".")), None)
        if prefix:
            fams[prefix].add_metric([name[len(prefix) + 1 :]], n)
        elif name in ("published", "received"):
            (published if name == "published" else received).add_metric([], n)
        else:
            other.add_metric([name], n)
    subscribers = GaugeMetricFamily("tickmesh_subscribers", "Subscribers connected to the aggregator")
    subscribers.add_metric([], view.gauges.get("subscribers", 0.0))
    gauges = GaugeMetricFamily("tickmesh_gauge", "Other mesh-wide gauges by name", labels=["name"])
    for name, value in sorted(view.gauges.items()):
        if name != "subscribers":
            gauges.add_metric([name], value)
    yield from (*fams.values(), published, received, other, subscribers, gauges)


def _process_families(view: MeshView) -> Iterator[Metric]:
    labels = ["process", "role", "host"]  # not the pid: a restart keeps its series
    up = GaugeMetricFamily("tickmesh_process_up", "1 if the process reported recently", labels=labels)
    heartbeat = GaugeMetricFamily(
        "tickmesh_process_heartbeat_age_seconds", "Seconds since control heard from the process", labels=labels
    )
    version = GaugeMetricFamily("tickmesh_process_config_version", "Config version applied", labels=labels)
    started = GaugeMetricFamily("tickmesh_process_start_time_seconds", "Start time, Unix seconds", labels=labels)
    gauges = {k: GaugeMetricFamily(f, doc, labels=labels) for k, (f, doc) in PROCESS_GAUGES.items()}
    for p in view.processes:
        values = [p.process, p.role, p.host]
        up.add_metric(values, 1.0 if p.live else 0.0)
        heartbeat.add_metric(values, max(0.0, (view.time_ns - p.seen_ns) / 1e9))
        version.add_metric(values, p.config_version)
        started.add_metric(values, p.started_ns / 1e9)
        for key, fam in gauges.items():
            if key in p.gauges:
                fam.add_metric(values, p.gauges[key])
    yield from (up, heartbeat, version, started, *gauges.values())


def registry(view: Callable[[], MeshView]) -> CollectorRegistry:
    """A registry holding only the mesh collector (no default process/platform collectors)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MeshCollector(view))
    return reg
