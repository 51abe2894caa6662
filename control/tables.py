"""What tickmesh-admin shows: rich tables for people, plain dicts (numbers as numbers) for --json."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from control.clock import skewed
from control.v1 import control_pb2 as pb


def to_dict(msg: Message) -> dict[str, Any]:
    """Every field of `msg`, defaults included; int64 stays a number (unlike the proto JSON mapping)."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _plain(value_field, v) for k, v in sorted(value.items())}
        elif _repeated(field):
            out[field.name] = [_plain(field, v) for v in value]
        else:
            out[field.name] = _plain(field, value)
    return out


def _repeated(field: FieldDescriptor) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 6; `label` is gone in 7
        return bool(field.is_repeated)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)


def _plain(field: FieldDescriptor, value: Any) -> Any:
    return to_dict(value) if field.type == FieldDescriptor.TYPE_MESSAGE else value


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _us(*values: float) -> str:
    return " / ".join(f"{v:,.0f}" if v else "-" for v in values) if any(values) else "-"


def _ms(*us_values: float) -> str:
    return " / ".join(f"{v / 1000:,.1f}" if v else "-" for v in us_values) if any(us_values) else "-"


def _by_label(counts: Any) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))


def channels_table(reply: pb.ListChannelsResponse) -> Table:
    table = Table(title=f"channels · config version {reply.config_version}", title_justify="left")
    for name in ("channel", "type", "prio", "batch", "timeout ms", "paused", "shards", "overflow", "ver"):
        table.add_column(name, justify="right" if name in ("prio", "batch", "timeout ms", "shards", "ver") else "left")
    table.add_column("rules", ratio=1)
    for ch in reply.channels:
        rules = " ".join(f"{k}={v}" for k, v in sorted(ch.rules.items()))  # wraps between rules
        paused = Text("PAUSED", style="bold red") if ch.paused else Text("no")
        table.add_row(
            ch.name, ch.data_type, str(ch.priority), str(ch.batch_size), f"{ch.timeout_ms:g}", paused,
            str(ch.shards), ch.overflow, str(ch.config_version), rules,
        )  # fmt: skip
    return table


def metrics_view(snap: pb.MetricsSnapshot, wide: bool = False) -> RenderableType:
    """Channels, their breakdowns by reason and kind, aggregator and processes of one snapshot.

    The default fits an 80-column terminal; `wide` shows every column.
    """
    if wide:
        return Group(_channel_metrics(snap), _breakdowns(snap), _aggregator_line(snap), _processes(snap))
    return Group(_narrow_channels(snap), _breakdowns(snap), _aggregator_line(snap), _narrow_processes(snap))


def _narrow_channels(snap: pb.MetricsSnapshot) -> Table:
    """Seven columns: `shed` sums what was let go on purpose (conflated, dropped oldest, paused)."""
    table = Table(
        title=f"channels · config version {snap.config_version}",
        title_justify="left",
        caption="shed = conflated + dropped oldest + paused · --wide: every column",
        caption_justify="left",
    )
    for name in ("channel", "received", "processed", "rejected", "shed", "events", "e2e ms\np50/p99"):
        table.add_column(name, justify="left" if name == "channel" else "right", no_wrap=True)
    for c in snap.channels:
        table.add_row(
            c.channel, _n(c.received), _n(c.processed), _n(c.rejected_total),
            _n(c.conflated + c.dropped_oldest + c.paused_dropped), _n(c.events_total),
            _ms(c.latency_p50_us, c.latency_p99_us),
        )  # fmt: skip
    return table


def _narrow_processes(snap: pb.MetricsSnapshot) -> Table:
    table = Table(title="processes", title_justify="left")
    for name in ("process", "pid", "RSS MB", "CPU %", "uptime s", "heartbeat"):
        table.add_column(name, justify="left" if name == "process" else "right")
    for p in snap.processes:
        table.add_row(
            p.process, str(p.pid), f"{p.rss_bytes / 1e6:,.1f}", f"{p.cpu_percent:.1f}", f"{p.uptime_s:,.0f}",
            _age(p),
        )  # fmt: skip
    return table


def _age(p: pb.ProcessInfo) -> Text:
    age = Text(f"{p.heartbeat_age_s:.1f} s", style="" if p.live else "bold red")
    if not p.live:
        age.append(" (down)")
    return age


def _channel_metrics(snap: pb.MetricsSnapshot) -> Table:
    table = Table(title=f"channels · config version {snap.config_version}", title_justify="left")
    for name in ("channel", "received", "routed", "processed", "rejected", "conflated", "shed", "paused",
                 "batches", "queue", "events", "proc µs\nmean/p99", "e2e ms\np50/p99/p99.9"):  # fmt: skip
        table.add_column(name, justify="left" if name == "channel" else "right", no_wrap=True)
    for c in snap.channels:
        table.add_row(
            c.channel, _n(c.received), _n(c.routed), _n(c.processed), _n(c.rejected_total), _n(c.conflated),
            _n(c.dropped_oldest), _n(c.paused_dropped), _n(c.batches), _n(c.queue_depth), _n(c.events_total),
            _us(c.processing_mean_us, c.processing_p99_us),
            _ms(c.latency_p50_us, c.latency_p99_us, c.latency_p999_us),
        )  # fmt: skip
    return table


def _breakdowns(snap: pb.MetricsSnapshot) -> Text:
    lines = []
    for c in snap.channels:
        parts = [f"{what}: {_by_label(counts)}" for what, counts in
                 (("events", c.events), ("rejected", c.rejected), ("ignored", c.ignored)) if counts]  # fmt: skip
        if parts:
            lines.append(f"{c.channel:<6} " + " · ".join(parts))
    return Text("\n".join(lines))


def _aggregator_line(snap: pb.MetricsSnapshot) -> Text:
    a = snap.aggregator
    dedup = f" ({_by_label(a.deduplicated)})" if a.deduplicated else ""
    line = (
        f"aggregator: published {a.published:,} · received {a.received:,} · "
        f"deduplicated {a.deduplicated_total:,}{dedup} · subscribers {a.subscribers:,.0f}"
    )
    if a.subscriber_gaps:
        line += f"\nsubscribers reported {a.subscriber_gaps:,} gaps, {a.subscriber_missed:,} publications missed"
    if snap.ingest_rejected:
        line += f"\ningest rejected: {_by_label(snap.ingest_rejected)}"
    if a.input_rejected:
        line += f"\ninput refused: {_by_label(a.input_rejected)}"
    mixed = mixed_versions(snap)
    if mixed:
        line += f"\nMIXED VERSIONS: {mixed}"
    skew = clock_skew(snap)
    if skew:
        line += f'\nCLOCK SKEW: {skew} (run NTP or chrony on every host; docs/deploy.md, "Clocks")'
    return Text(line)


def clock_skew(snap: pb.MetricsSnapshot) -> str:
    """'' when every live process's clock is within SKEW_LIMIT_MS of the router's, else who is off by how much."""
    off = skewed((p.process, p.clock_offset_ms) for p in snap.processes if p.live)
    reference = "the router" if any(p.process == "router" and p.live for p in snap.processes) else "control"
    return ", ".join(f"{name} {ms:+,.0f} ms" for name, ms in sorted(off.items())) + f" from {reference}" if off else ""


def mixed_versions(snap: pb.MetricsSnapshot) -> str:
    """'' when every live process runs the same software and wire versions, else who runs what."""
    found: dict[str, list[str]] = {}
    for p in snap.processes:
        if p.live:
            found.setdefault(f"{p.software or 'unknown'} (wire {p.wire})", []).append(p.process)
    if len(found) < 2:
        return ""
    return "; ".join(f"{version}: {', '.join(names)}" for version, names in sorted(found.items()))


def _processes(snap: pb.MetricsSnapshot) -> Table:
    table = Table(title="processes", title_justify="left")
    names = ("process", "role", "pid", "host", "version", "RSS MB", "CPU %", "uptime s", "clock ms", "heartbeat ago")
    for name in names:
        table.add_column(name, justify="left" if name in ("process", "role", "host") else "right")
    for p in snap.processes:
        table.add_row(
            p.process, p.role, str(p.pid), p.host, str(p.config_version), f"{p.rss_bytes / 1e6:,.1f}",
            f"{p.cpu_percent:.1f}", f"{p.uptime_s:,.0f}", f"{p.clock_offset_ms:+,.0f}", _age(p),
        )  # fmt: skip
    return table


def update_text(reply: pb.UpdateChannelResponse, keys: list[str]) -> str:
    """One or two lines saying what changed, at which version, and who applied it."""
    ch = reply.channel
    values = []
    for key in keys:
        if key != "rules" and key in pb.Channel.DESCRIPTOR.fields_by_name:
            value = getattr(ch, key)
        else:
            value = ch.rules.get(key.removeprefix("rules."), "?")
        values.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    what = " ".join(values)
    if not reply.changed:
        head = f"{ch.name}: unchanged ({what}), config version {reply.config_version}"
    else:
        head = f"{ch.name}: {what} → config version {reply.config_version}"
    if reply.acked:
        return f"{head}\napplied by: {', '.join(reply.acked)}"
    return f"{head}\nno live process holds {ch.name}; processes apply it when they start"
