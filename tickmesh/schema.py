"""Every wire message and event of the mesh, as strict msgspec Structs (docs/wire.md)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

# Records and events hold only scalars, so they cannot form reference cycles:
# gc=False keeps the hundreds of thousands a process may hold out of the
# cycle collector's passes (fewer and shorter GC pauses on the hot path).

# -- value constraints shared by every record -------------------------------
# Prices are finite and positive: gt=0 rejects NaN, the upper bound rejects +inf.
Price = Annotated[float, Meta(gt=0, lt=1e9)]
Size = Annotated[float, Meta(ge=0, lt=1e15)]
# Integer nanoseconds since the epoch, 1980-01-01 .. 2100-01-01: a timestamp in
# seconds, milliseconds or microseconds falls below the floor and is rejected.
TIME_MIN_NS = 315_532_800_000_000_000
TIME_MAX_NS = 4_102_444_800_000_000_000
Nanos = Annotated[int, Meta(ge=TIME_MIN_NS, lt=TIME_MAX_NS)]
Ticker = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9.:\-]*$")]
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Condition = Annotated[int, Meta(ge=0, lt=1 << 16)]


class Trade(Struct, tag="T", array_like=True, frozen=True, omit_defaults=True, gc=False):
    """One executed trade (TICK channel)."""

    ticker: Ticker
    price: Price
    size: Size
    timestamp: Nanos
    exchange: Annotated[int, Meta(ge=0, lt=1 << 16)] | None = None
    conditions: Annotated[tuple[Condition, ...], Meta(max_length=32)] = ()
    sequence: Count | None = None  # the source's own sequence number (Polygon `q`)


class Bar(Struct, tag="B", array_like=True, frozen=True, omit_defaults=True, gc=False):
    """One OHLCV aggregate bar over [start, end) (OHLCV channel)."""

    ticker: Ticker
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Size
    start: Nanos
    end: Nanos
    vwap: Price | None = None
    accumulated_volume: Size | None = None
    trade_count: Count | None = None

    def __post_init__(self) -> None:
        if not self.low <= min(self.open, self.close) or not max(self.open, self.close) <= self.high:
            raise ValueError("bar prices must satisfy low <= open, close <= high")
        if self.start >= self.end:
            raise ValueError("bar start must be before its end")


class FairMarketValue(Struct, tag="F", array_like=True, frozen=True, omit_defaults=True, gc=False):
    """One fair-market-value update (FMV channel)."""

    ticker: Ticker
    fmv: Price
    timestamp: Nanos
    market_price: Price | None = None
    confidence: Annotated[float, Meta(ge=0, le=1)] | None = None


Record = Trade | Bar | FairMarketValue


def record_time(record: Record) -> int:
    """The data time of a record: a trade's or update's timestamp, a bar's end."""
    return record.end if isinstance(record, Bar) else record.timestamp


# -- ingest control ----------------------------------------------------------
class Mark(Struct, tag="M", array_like=True, frozen=True):
    """A producer's flush marker: the router acknowledges it on its sync socket
    once every record the producer pushed before it has been routed."""

    producer: Annotated[str, Meta(min_length=1, max_length=64)]
    n: Count


IngestItem = Trade | Bar | FairMarketValue | Mark


class MarkQuery(Struct, array_like=True, frozen=True):
    """REQ to the router's sync socket: has `producer` mark `n` been routed?"""

    producer: str
    n: int


# -- router -> worker ----------------------------------------------------------
class Batch(Struct, tag="batch", array_like=True, frozen=True):
    """Records of one (channel, shard) stream; record i has sequence seq + i."""

    channel: str
    shard: int
    epoch: int  # the router's start time: a new epoch restarts the sequence
    seq: int
    retained_from: int  # the oldest sequence the router still holds (all before it are done)
    ingest_ns: list[int]
    records: list[Record]


class StreamState(Struct, tag="state", array_like=True, frozen=True):
    """The router's heartbeat on a quiet stream, and its last word when it stops (`final`)."""

    channel: str
    shard: int
    epoch: int
    last_seq: int  # the last sequence number sent (-1 if none)
    retained_from: int
    final: bool = False


WorkerInput = Batch | StreamState


# -- worker / aggregator -> router ------------------------------------------------
class Ack(Struct, tag="ack", array_like=True, frozen=True):
    """What a stream's consumer has done, up to and including `seq`.

    kinds: `delivered` (aggregator: the events of every record up to seq are
    published), `checkpoint` (worker: its state up to seq is on disk), `hello`
    (a worker instance starting from seq: send what follows), `gap` (a worker
    missed records after seq: send them again), `heartbeat` (a worker is alive).
    The router releases a record once it is both delivered and checkpointed.
    """

    channel: str
    shard: int
    epoch: int
    seq: int
    sender: str  # process instance
    kind: str


# -- events --------------------------------------------------------------------
class EventBase(Struct, frozen=True, tag_field="kind", omit_defaults=True, gc=False):
    """The envelope every event carries (kind is the tag)."""

    id: str  # deterministic: source, kind, ticker and the causing record
    ticker: str
    source: str  # channel that detected it: tick | ohlcv | fmv
    priority: int
    time: int  # event time: the data's time in ns, not the wall clock
    price: float
    record_seq: int  # the causing record's sequence number on its stream
    ingest_ns: int  # when the router received the causing record
    detected_ns: int  # when the worker detected the event


class High(EventBase, tag="high", frozen=True):
    """A new session high (tick) or a bar closing at its high (ohlcv)."""

    previous: float | None = None  # tick: the previous reported high
    count: int | None = None  # tick: highs reported this session
    pct: float | None = None  # ohlcv: bar change in percent


class Low(EventBase, tag="low", frozen=True):
    """A new session low (tick) or a bar closing at its low (ohlcv)."""

    previous: float | None = None
    count: int | None = None
    pct: float | None = None


class Trend(EventBase, tag="trend", frozen=True):
    """A sustained directional move."""

    direction: str  # up | down
    score: float | None = None  # tick: weighted multi-window score
    strength: str | None = None  # tick: strong | moderate
    pct: float | None = None  # ohlcv: total move of the run in percent


class Surge(EventBase, tag="surge", frozen=True):
    """A sharp price move within seconds (tick)."""

    direction: str
    move_pct: float
    volume_ratio: float


class BigMove(EventBase, tag="big_move", frozen=True):
    """A bar whose close moved far from its open (ohlcv)."""

    direction: str
    pct: float


class VolumeSurge(EventBase, tag="volume_surge", frozen=True):
    """A bar whose volume far exceeds the recent average (ohlcv)."""

    volume: float
    ratio: float
    average: float


class FmvDeviation(EventBase, tag="fmv_deviation", frozen=True):
    """Fair market value far from the market price (fmv)."""

    direction: str  # overvalued | undervalued
    fmv: float
    market_price: float
    deviation: float  # percent
    confidence: float


Event = High | Low | Trend | Surge | BigMove | VolumeSurge | FmvDeviation
EVENT_KINDS: tuple[str, ...] = ("high", "low", "trend", "surge", "big_move", "volume_surge", "fmv_deviation")


def event_id(source: str, kind: str, ticker: str, cause: int | str) -> str:
    """The deterministic id of an event: a redelivered record yields the same id."""
    return f"{source}:{kind}:{ticker}:{cause}"


# -- worker -> aggregator --------------------------------------------------------
class EventBatch(Struct, tag="events", array_like=True, frozen=True):
    """Events a worker detected in the records of its stream up to `upto` (events may be empty)."""

    worker: str
    channel: str
    shard: int
    epoch: int
    upto: int
    events: list[Event]


class WorkerDone(Struct, tag="done", array_like=True, frozen=True):
    """The worker has sent every event it will send (it is stopping)."""

    worker: str
    channel: str
    shard: int


AggregatorInput = EventBatch | WorkerDone


# -- aggregator -> subscribers (self-describing maps) ------------------------------
class Publication(Struct, tag="event", tag_field="type", frozen=True):
    """One published event; `seq` counts up by one per publication in an epoch."""

    seq: int
    epoch: int
    published_ns: int
    event: Event


class Heartbeat(Struct, tag="heartbeat", tag_field="type", frozen=True):
    """Sent when the stream is quiet: `seq` is the last published sequence."""

    seq: int
    epoch: int
    time_ns: int


Published = Publication | Heartbeat
HEARTBEAT_TOPIC = b"_heartbeat/"


class ReplayRequest(Struct, tag="replay", tag_field="type", frozen=True):
    """To the aggregator's replay socket: publications after `since`, or the `last` N."""

    since: int | None = None
    last: int | None = None


class ReplayReply(Struct, tag="replayed", tag_field="type", frozen=True):
    """What the replay ring still holds of what was asked, oldest first.

    `complete` is False when the ring no longer holds all of it (or the epoch changed).
    """

    epoch: int
    complete: bool
    publications: list[Publication]


def topic_of(event: EventBase) -> bytes:
    """PUB topic `kind/ticker/`: subscribe to `kind/` or `kind/TICKER/`."""
    kind = event.__struct_config__.tag  # type: ignore[attr-defined]
    return f"{kind}/{event.ticker}/".encode()


# -- codecs, built once ------------------------------------------------------------
encoder = msgspec.msgpack.Encoder()
ingest_decoder = msgspec.msgpack.Decoder(list[IngestItem])
item_decoder = msgspec.msgpack.Decoder(IngestItem)
worker_input_decoder = msgspec.msgpack.Decoder(WorkerInput)
ack_decoder = msgspec.msgpack.Decoder(Ack)
aggregator_input_decoder = msgspec.msgpack.Decoder(AggregatorInput)
published_decoder = msgspec.msgpack.Decoder(Published)
mark_query_decoder = msgspec.msgpack.Decoder(MarkQuery)
replay_request_decoder = msgspec.msgpack.Decoder(ReplayRequest)
replay_reply_decoder = msgspec.msgpack.Decoder(ReplayReply)
