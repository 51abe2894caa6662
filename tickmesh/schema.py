"""Every wire message and event of the mesh, as strict msgspec Structs (docs/wire.md)."""

from __future__ import annotations

import re
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

# Records and events hold only scalars, so they cannot form reference cycles:
# gc=False keeps the hundreds of thousands a process may hold out of the
# cycle collector's passes (fewer and shorter GC pauses on the hot path).

# The wire schema's version: raised when a struct changes in a way older processes cannot read.
# Structs are positional (array_like) on the hot paths, so fields are only ever appended, with
# defaults, never reordered or removed (docs/wire.md, "Compatibility").
WIRE_VERSION = 2  # 2: typed stream acks (Hello, Gap, Checkpointed, Delivered)

# -- value constraints shared by every record -------------------------------
# Prices are finite and positive: gt=0 rejects NaN, the upper bound rejects +inf.
Price = Annotated[float, Meta(gt=0, lt=1e9)]
Size = Annotated[float, Meta(ge=0, lt=1e15)]
# Integer nanoseconds since the epoch, 1980-01-01 .. 2100-01-01: a timestamp in
# seconds, milliseconds or microseconds falls below the floor and is rejected.
TIME_MIN_NS = 315_532_800_000_000_000
TIME_MAX_NS = 4_102_444_800_000_000_000
Nanos = Annotated[int, Meta(ge=TIME_MIN_NS, lt=TIME_MAX_NS)]
TICKER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.:\-]*$"
# A ticker: msgspec checks the length; the pattern is checked by the struct's __post_init__
# (check_ticker), once per distinct ticker (tickers repeat; a regex per record was two thirds of
# decoding a trade), and exactly: msgspec's own `pattern` searches, and `$` lets a trailing newline
# through. `extra` carries the pattern for the wire tables (scripts/wire_tables.py).
Ticker = Annotated[str, Meta(min_length=1, max_length=32, extra={"pattern": TICKER_PATTERN})]
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Condition = Annotated[int, Meta(ge=0, lt=1 << 16)]
Real = Annotated[float, Meta(ge=-1e300, le=1e300)]  # finite: NaN and ±inf fail the bounds
Source = Literal["tick", "ohlcv", "fmv"]  # the channels (tickmesh.config.CHANNELS)
Priority = Annotated[int, Meta(ge=1, le=9)]
EventId = Annotated[str, Meta(min_length=1, max_length=160)]
Direction = Literal["up", "down"]


KNOWN_TICKERS_MAX = 200_000  # tickers remembered as checked; past it, new ones are checked each time
_known_tickers: dict[str, str] = {}  # each ticker checked, to the first string of it checked
_ticker_match = re.compile(TICKER_PATTERN).fullmatch


def check_ticker(ticker: str, at: str = "$[1]") -> str:
    """The process's one string of `ticker` (past KNOWN_TICKERS_MAX tickers, `ticker` itself) if it
    matches TICKER_PATTERN, all of it, else ValueError (worded as msgspec's own, with the field's
    place `at`: a record's position, so a rejection names `ticker`).

    Decoding makes a new string per record. A table or set a process keeps by ticker (a detector's
    states, its tickers touched since the last checkpoint) takes the string this returns, so it
    never keeps a decoded record's copy alive: a shard's checkpoint interval kept one per ticker
    it touched, and once freed they left pymalloc pools empty between the states (docs/benchmarks.md).
    """
    try:
        return _known_tickers[ticker]  # (a try costs nothing in 3.11; .get() was ~15 ns a record more)
    except KeyError:
        pass
    if _ticker_match(ticker) is None:
        raise ValueError(f"Expected `str` matching regex {TICKER_PATTERN!r} - at `{at}`")
    if len(_known_tickers) < KNOWN_TICKERS_MAX:
        _known_tickers[ticker] = ticker
    return ticker


class Trade(Struct, tag="T", array_like=True, frozen=True, omit_defaults=True, gc=False):
    """One executed trade (TICK channel)."""

    ticker: Ticker
    price: Price
    size: Size
    timestamp: Nanos
    exchange: Annotated[int, Meta(ge=0, lt=1 << 16)] | None = None
    conditions: Annotated[tuple[Condition, ...], Meta(max_length=32)] = ()
    sequence: Count | None = None  # the source's own sequence number (Polygon `q`)

    def __post_init__(self) -> None:
        check_ticker(self.ticker)


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
        check_ticker(self.ticker)
        low, high = self.low, self.high  # chained comparisons: min()/max() calls doubled a bar's decode
        if not (low <= self.open <= high and low <= self.close <= high):
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

    def __post_init__(self) -> None:
        check_ticker(self.ticker)


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
# What a stream's consumers tell the router, each up to and including `seq` of the stream's
# `epoch` (tickmesh/stream.py is the protocol). The router releases a record once it is both
# Delivered and Checkpointed; `sender` is the worker instance (the aggregator for Delivered).
StreamChannel = Annotated[str, Meta(max_length=16)]
Shard = Annotated[int, Meta(ge=0, lt=64)]
Instance = Annotated[str, Meta(min_length=1, max_length=200)]
StreamSeq = Annotated[int, Meta(ge=-1, le=2**62)]


class Hello(Struct, tag="hello", array_like=True, frozen=True):
    """A worker instance starts (or restarts) holding the stream up to `seq`: send what follows."""

    channel: StreamChannel
    shard: Shard
    epoch: Count
    seq: StreamSeq
    sender: Instance


class Gap(Struct, tag="gap", array_like=True, frozen=True):
    """The worker missed records after `seq` (a lost message): send them again."""

    channel: StreamChannel
    shard: Shard
    epoch: Count
    seq: StreamSeq
    sender: Instance


class Checkpointed(Struct, tag="checkpoint", array_like=True, frozen=True):
    """The worker's state after `seq` is durable. Repeated every second as the worker's heartbeat,
    so a lost one never holds the stream."""

    channel: StreamChannel
    shard: Shard
    epoch: Count
    seq: StreamSeq
    sender: Instance


class Delivered(Struct, tag="delivered", array_like=True, frozen=True):
    """The aggregator has published the events of every record up to `seq`."""

    channel: StreamChannel
    shard: Shard
    epoch: Count
    seq: StreamSeq
    sender: Instance


Ack = Hello | Gap | Checkpointed | Delivered


# -- events --------------------------------------------------------------------
class EventBase(Struct, frozen=True, tag_field="kind", omit_defaults=True, gc=False):
    """The envelope every event carries (kind is the tag). Decoding validates every field as
    strictly as the router validates records: the aggregator takes events from a socket too."""

    id: EventId  # deterministic: source, kind, ticker and the causing record
    ticker: Ticker
    source: Source  # channel that detected it: tick | ohlcv | fmv
    priority: Priority
    time: Nanos  # event time: the data's time in ns, not the wall clock
    price: Price
    record_seq: Count  # the causing record's sequence number on its stream
    ingest_ns: Nanos  # when the router received the causing record
    detected_ns: Nanos  # when the worker detected the event

    def __post_init__(self) -> None:
        check_ticker(self.ticker, "$.ticker")


class High(EventBase, tag="high", frozen=True):
    """A new session high (tick) or a bar closing at its high (ohlcv)."""

    previous: Price | None = None  # tick: the previous reported high
    count: Count | None = None  # tick: highs reported this session
    pct: Real | None = None  # ohlcv: bar change in percent


class Low(EventBase, tag="low", frozen=True):
    """A new session low (tick) or a bar closing at its low (ohlcv)."""

    previous: Price | None = None
    count: Count | None = None
    pct: Real | None = None


class Trend(EventBase, tag="trend", frozen=True):
    """A sustained directional move."""

    direction: Direction
    score: Real | None = None  # tick: weighted multi-window score
    strength: Literal["strong", "moderate"] | None = None  # tick
    pct: Real | None = None  # ohlcv: total move of the run in percent


class Surge(EventBase, tag="surge", frozen=True):
    """A sharp price move within seconds (tick)."""

    direction: Direction
    move_pct: Real
    volume_ratio: Real


class BigMove(EventBase, tag="big_move", frozen=True):
    """A bar whose close moved far from its open (ohlcv)."""

    direction: Direction
    pct: Real


class VolumeSurge(EventBase, tag="volume_surge", frozen=True):
    """A bar whose volume far exceeds the recent average (ohlcv)."""

    volume: Size
    ratio: Real
    average: Real


class FmvDeviation(EventBase, tag="fmv_deviation", frozen=True):
    """Fair market value far from the market price (fmv)."""

    direction: Literal["overvalued", "undervalued"]
    fmv: Price
    market_price: Price
    deviation: Real  # percent
    confidence: Annotated[float, Meta(ge=0, le=1)]


Event = High | Low | Trend | Surge | BigMove | VolumeSurge | FmvDeviation
EVENT_KINDS: tuple[str, ...] = ("high", "low", "trend", "surge", "big_move", "volume_surge", "fmv_deviation")


def event_id(source: str, kind: str, ticker: str, cause: int | str) -> str:
    """The deterministic id of an event: a redelivered record yields the same id."""
    return f"{source}:{kind}:{ticker}:{cause}"


# -- worker -> aggregator --------------------------------------------------------
E = TypeVar("E")


class EventBatch(Struct, Generic[E], tag="events", array_like=True, frozen=True):
    """Events a worker detected in the records of one router's stream up to `upto` (events may be empty).

    Workers send `EventBatch[Event]`; the aggregator decodes `EventBatch[msgspec.Raw]` and then
    each event on its own, so one invalid event is rejected without its neighbours.
    """

    worker: Annotated[str, Meta(max_length=200)]
    channel: Source
    shard: Annotated[int, Meta(ge=0, lt=64)]
    epoch: Count
    upto: int
    events: list[E]
    router: Annotated[int, Meta(ge=0, lt=16)] = 0  # which router's stream (`[router] count`)


class WorkerDone(Struct, tag="done", array_like=True, frozen=True):
    """The worker has sent every event it will send (it is stopping)."""

    worker: Annotated[str, Meta(max_length=200)]
    channel: Source
    shard: Annotated[int, Meta(ge=0, lt=64)]


class WorkerStopping(Struct, tag="stopping", array_like=True, frozen=True):
    """The worker got its stop signal: it flushes what it found, then says WorkerDone. A stopping aggregator
    waits for the workers that say this, and only for them (the others are not stopping with it)."""

    worker: Annotated[str, Meta(max_length=200)]
    channel: Source
    shard: Annotated[int, Meta(ge=0, lt=64)]


AggregatorInput = EventBatch[msgspec.Raw] | WorkerDone | WorkerStopping


# -- aggregator -> subscribers (self-describing maps) ------------------------------
class Publication(Struct, tag="event", tag_field="type", frozen=True):
    """One published event; `seq` counts up by one per publication in an epoch."""

    seq: int
    epoch: int
    published_ns: int
    event: Event


class Heartbeat(Struct, tag="heartbeat", tag_field="type", frozen=True):
    """Sent when the stream is quiet: `seq` is the last published sequence.

    At stop the aggregator says so at once (`stopping`), and its last message is a heartbeat with
    `final`: `seq` is then the epoch's last, so a follower can stop once it has everything up to it.
    """

    seq: int
    epoch: int
    time_ns: int
    stopping: bool = False  # the aggregator is stopping: what the workers flush still follows
    final: bool = False  # the epoch's last message: nothing follows `seq`


Published = Publication | Heartbeat


class RawPublication(Struct, tag="event", tag_field="type", frozen=True):
    """A Publication read with its event still encoded (the journal stores those bytes as they are)."""

    seq: int
    epoch: int
    published_ns: int
    event: msgspec.Raw


RawPublished = RawPublication | Heartbeat
HEARTBEAT_TOPIC = b"_heartbeat/"


class ReplayRequest(Struct, tag="replay", tag_field="type", frozen=True):
    """To the aggregator's replay socket: publications after `since`, or the `last` N.

    `missed`: how many publications the asker's gap lost (the subscriber library reports it,
    so the aggregator can count what slow subscribers lose on the PUB socket).
    """

    since: Annotated[int, Meta(ge=0)] | None = None
    last: Annotated[int, Meta(ge=0, le=10_000_000)] | None = None
    missed: Annotated[int, Meta(ge=0, le=2**62)] = 0


P = TypeVar("P")
EPOCHS_KEPT = 32  # the aggregator's dedup memory keeps where this many epochs ended (ReplayReply.ended)
Ends = Annotated[list[tuple[int, int]], Meta(max_length=EPOCHS_KEPT)]  # (epoch, its last seq recorded), newest first


class ReplayReply(Struct, Generic[P], tag="replayed", tag_field="type", frozen=True):
    """What the replay ring still holds of what was asked, oldest first.

    `complete` is False when the ring no longer holds all of it (or the epoch changed).
    `more` is True when the reply stopped at `aggregator.replay_max_bytes`: ask again with
    `since` = the last seq received. (The aggregator encodes `ReplayReply[msgspec.Raw]`: the
    publications exactly as they were published.)

    `ended` says where each of the epochs before this one ended, newest first, as recorded in the
    aggregator's dedup memory: a follower still in one of them lost what came after its position
    there, and all of every epoch after it (`ended_losses`). An epoch that published nothing is there
    with seq 0. `previous_epoch` and `previous_seq` are the newest that published something (0 when
    none is recorded), the one entry older subscribers read.
    """

    epoch: int
    complete: bool
    publications: list[P]
    more: bool = False
    previous_epoch: int = 0  # the newest epoch before this one that published something (0: none recorded)
    previous_seq: int = 0  # its last seq recorded: a lower bound after a kill -9 (up to 50 ms unrecorded)
    ended: Ends = []  # where the epochs before this one ended (seq 0: none published), newest first


def ended_losses(reply: ReplayReply[P], epoch: int, last: int) -> tuple[list[tuple[int, int, int]], bool]:
    """What a follower that had seq `last` of `epoch` did not receive of the epochs that ended before
    `reply`'s: (epoch, after seq, count) for each, newest first, and whether where `epoch` ended is
    recorded (False: what it published after `last` is not known, so cannot be counted).

    Epochs are start times: one later than `epoch` ran and ended while the follower was away (all of
    it is lost). An aggregator from before `ended` tells only `previous_epoch`.
    """
    ends = reply.ended or ([(reply.previous_epoch, reply.previous_seq)] if reply.previous_epoch else [])
    losses = []
    for ended, seq in ends:
        if ended == epoch:
            if seq > last:
                losses.append((ended, last, seq - last))
            return losses, True
        if ended < epoch:  # older than ours: ours is not recorded
            break
        if seq:
            losses.append((ended, 0, seq))
    return losses, False


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
event_decoder = msgspec.msgpack.Decoder(Event)
published_decoder = msgspec.msgpack.Decoder(Published)
raw_published_decoder = msgspec.msgpack.Decoder(RawPublished)
mark_query_decoder = msgspec.msgpack.Decoder(MarkQuery)
replay_request_decoder = msgspec.msgpack.Decoder(ReplayRequest)
replay_reply_decoder = msgspec.msgpack.Decoder(ReplayReply[Publication])
raw_replay_reply_decoder = msgspec.msgpack.Decoder(ReplayReply[RawPublication])
