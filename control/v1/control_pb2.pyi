from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListChannelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListChannelsResponse(_message.Message):
    __slots__ = ("config_version", "channels")
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    config_version: int
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    def __init__(self, config_version: _Optional[int] = ..., channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ...) -> None: ...

class Channel(_message.Message):
    __slots__ = ("name", "data_type", "priority", "batch_size", "timeout_ms", "paused", "shards", "overflow", "hwm", "buffer", "rules", "config_version")
    class RulesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_FIELD_NUMBER: _ClassVar[int]
    HWM_FIELD_NUMBER: _ClassVar[int]
    BUFFER_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    data_type: str
    priority: int
    batch_size: int
    timeout_ms: float
    paused: bool
    shards: int
    overflow: str
    hwm: int
    buffer: int
    rules: _containers.ScalarMap[str, str]
    config_version: int
    def __init__(self, name: _Optional[str] = ..., data_type: _Optional[str] = ..., priority: _Optional[int] = ..., batch_size: _Optional[int] = ..., timeout_ms: _Optional[float] = ..., paused: _Optional[bool] = ..., shards: _Optional[int] = ..., overflow: _Optional[str] = ..., hwm: _Optional[int] = ..., buffer: _Optional[int] = ..., rules: _Optional[_Mapping[str, str]] = ..., config_version: _Optional[int] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class WatchMetricsRequest(_message.Message):
    __slots__ = ("channel", "interval_s")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    channel: str
    interval_s: float
    def __init__(self, channel: _Optional[str] = ..., interval_s: _Optional[float] = ...) -> None: ...

class MetricsSnapshot(_message.Message):
    __slots__ = ("time_ns", "config_version", "channels", "aggregator", "ingest_rejected", "processes", "counters", "gauges")
    class IngestRejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class GaugesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FIELD_NUMBER: _ClassVar[int]
    INGEST_REJECTED_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    config_version: int
    channels: _containers.RepeatedCompositeFieldContainer[ChannelMetrics]
    aggregator: AggregatorMetrics
    ingest_rejected: _containers.ScalarMap[str, int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    counters: _containers.ScalarMap[str, int]
    gauges: _containers.ScalarMap[str, float]
    def __init__(self, time_ns: _Optional[int] = ..., config_version: _Optional[int] = ..., channels: _Optional[_Iterable[_Union[ChannelMetrics, _Mapping]]] = ..., aggregator: _Optional[_Union[AggregatorMetrics, _Mapping]] = ..., ingest_rejected: _Optional[_Mapping[str, int]] = ..., processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., counters: _Optional[_Mapping[str, int]] = ..., gauges: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ChannelMetrics(_message.Message):
    __slots__ = ("channel", "received", "routed", "processed", "batches", "rejected_total", "rejected", "conflated", "dropped_oldest", "paused_dropped", "resent", "failed", "queue_depth", "unacked", "processing_mean_us", "processing_p99_us", "events_total", "events", "ignored", "latency_p50_us", "latency_p99_us", "latency_p999_us", "counters", "gauges")
    class RejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class EventsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class IgnoredEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class GaugesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ROUTED_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CONFLATED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_OLDEST_FIELD_NUMBER: _ClassVar[int]
    PAUSED_DROPPED_FIELD_NUMBER: _ClassVar[int]
    RESENT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    UNACKED_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_MEAN_US_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_P99_US_FIELD_NUMBER: _ClassVar[int]
    EVENTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_US_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_US_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P999_US_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    channel: str
    received: int
    routed: int
    processed: int
    batches: int
    rejected_total: int
    rejected: _containers.ScalarMap[str, int]
    conflated: int
    dropped_oldest: int
    paused_dropped: int
    resent: int
    failed: int
    queue_depth: float
    unacked: float
    processing_mean_us: float
    processing_p99_us: float
    events_total: int
    events: _containers.ScalarMap[str, int]
    ignored: _containers.ScalarMap[str, int]
    latency_p50_us: float
    latency_p99_us: float
    latency_p999_us: float
    counters: _containers.ScalarMap[str, int]
    gauges: _containers.ScalarMap[str, float]
    def __init__(self, channel: _Optional[str] = ..., received: _Optional[int] = ..., routed: _Optional[int] = ..., processed: _Optional[int] = ..., batches: _Optional[int] = ..., rejected_total: _Optional[int] = ..., rejected: _Optional[_Mapping[str, int]] = ..., conflated: _Optional[int] = ..., dropped_oldest: _Optional[int] = ..., paused_dropped: _Optional[int] = ..., resent: _Optional[int] = ..., failed: _Optional[int] = ..., queue_depth: _Optional[float] = ..., unacked: _Optional[float] = ..., processing_mean_us: _Optional[float] = ..., processing_p99_us: _Optional[float] = ..., events_total: _Optional[int] = ..., events: _Optional[_Mapping[str, int]] = ..., ignored: _Optional[_Mapping[str, int]] = ..., latency_p50_us: _Optional[float] = ..., latency_p99_us: _Optional[float] = ..., latency_p999_us: _Optional[float] = ..., counters: _Optional[_Mapping[str, int]] = ..., gauges: _Optional[_Mapping[str, float]] = ...) -> None: ...

class AggregatorMetrics(_message.Message):
    __slots__ = ("published", "received", "deduplicated_total", "deduplicated", "subscribers", "subscriber_gaps", "subscriber_missed", "input_rejected")
    class DeduplicatedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class InputRejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_GAPS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_MISSED_FIELD_NUMBER: _ClassVar[int]
    INPUT_REJECTED_FIELD_NUMBER: _ClassVar[int]
    published: int
    received: int
    deduplicated_total: int
    deduplicated: _containers.ScalarMap[str, int]
    subscribers: float
    subscriber_gaps: int
    subscriber_missed: int
    input_rejected: _containers.ScalarMap[str, int]
    def __init__(self, published: _Optional[int] = ..., received: _Optional[int] = ..., deduplicated_total: _Optional[int] = ..., deduplicated: _Optional[_Mapping[str, int]] = ..., subscribers: _Optional[float] = ..., subscriber_gaps: _Optional[int] = ..., subscriber_missed: _Optional[int] = ..., input_rejected: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ProcessInfo(_message.Message):
    __slots__ = ("process", "role", "host", "pid", "channels", "config_version", "started_ns", "last_heartbeat_ns", "heartbeat_age_s", "live", "rss_bytes", "cpu_percent", "uptime_s", "counters", "gauges", "software", "wire", "clock_offset_ms")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class GaugesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_NS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_NS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_FIELD_NUMBER: _ClassVar[int]
    WIRE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    process: str
    role: str
    host: str
    pid: int
    channels: _containers.RepeatedScalarFieldContainer[str]
    config_version: int
    started_ns: int
    last_heartbeat_ns: int
    heartbeat_age_s: float
    live: bool
    rss_bytes: float
    cpu_percent: float
    uptime_s: float
    counters: _containers.ScalarMap[str, int]
    gauges: _containers.ScalarMap[str, float]
    software: str
    wire: int
    clock_offset_ms: float
    def __init__(self, process: _Optional[str] = ..., role: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., channels: _Optional[_Iterable[str]] = ..., config_version: _Optional[int] = ..., started_ns: _Optional[int] = ..., last_heartbeat_ns: _Optional[int] = ..., heartbeat_age_s: _Optional[float] = ..., live: _Optional[bool] = ..., rss_bytes: _Optional[float] = ..., cpu_percent: _Optional[float] = ..., uptime_s: _Optional[float] = ..., counters: _Optional[_Mapping[str, int]] = ..., gauges: _Optional[_Mapping[str, float]] = ..., software: _Optional[str] = ..., wire: _Optional[int] = ..., clock_offset_ms: _Optional[float] = ...) -> None: ...

class UpdateChannelRequest(_message.Message):
    __slots__ = ("channel", "changes")
    class ChangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    channel: str
    changes: _containers.ScalarMap[str, str]
    def __init__(self, channel: _Optional[str] = ..., changes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ChannelRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class UpdateChannelResponse(_message.Message):
    __slots__ = ("channel", "config_version", "acked", "changed")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    config_version: int
    acked: _containers.RepeatedScalarFieldContainer[str]
    changed: bool
    def __init__(self, channel: _Optional[_Union[Channel, _Mapping]] = ..., config_version: _Optional[int] = ..., acked: _Optional[_Iterable[str]] = ..., changed: _Optional[bool] = ...) -> None: ...

class QueryEventsRequest(_message.Message):
    __slots__ = ("tickers", "kinds", "sources", "since", "until", "seq_from", "seq_to", "epoch", "run", "newest_first", "limit", "page_token", "offset")
    TICKERS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FROM_FIELD_NUMBER: _ClassVar[int]
    SEQ_TO_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    tickers: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[str]
    since: str
    until: str
    seq_from: int
    seq_to: int
    epoch: int
    run: str
    newest_first: bool
    limit: int
    page_token: str
    offset: int
    def __init__(self, tickers: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[str]] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., seq_from: _Optional[int] = ..., seq_to: _Optional[int] = ..., epoch: _Optional[int] = ..., run: _Optional[str] = ..., newest_first: _Optional[bool] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class JournalEvent(_message.Message):
    __slots__ = ("id", "kind", "ticker", "source", "priority", "time_ns", "price", "epoch", "seq", "published_ns", "run", "fields_json", "page_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TICKER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_NS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    ticker: str
    source: str
    priority: int
    time_ns: int
    price: float
    epoch: int
    seq: int
    published_ns: int
    run: str
    fields_json: str
    page_token: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., ticker: _Optional[str] = ..., source: _Optional[str] = ..., priority: _Optional[int] = ..., time_ns: _Optional[int] = ..., price: _Optional[float] = ..., epoch: _Optional[int] = ..., seq: _Optional[int] = ..., published_ns: _Optional[int] = ..., run: _Optional[str] = ..., fields_json: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...
