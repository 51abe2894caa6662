"""Feeds as real processes: sim, replay and the Polygon websocket client against the ingest contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from feeds.app import build_parser
from feeds.formats import ohlcv
from feeds.market import Market
from feeds.sim import build_spec
from tests.integration.feed_harness import FakeRouter, Feed
from tests.mesh import Mesh, collect, drain, poll_until
from tests.polygon_server import Plan, PolygonServer
from tickmesh.cli import EXIT_AUTH, EXIT_USAGE
from tickmesh.schema import Bar, BigMove, FairMarketValue, Publication, Record, Trade, encoder

DATA = Path(__file__).resolve().parent.parent / "data"
MS = 1_712_306_654_000


def sequences(records: list[Record]) -> list[int | None]:
    return [r.sequence if isinstance(r, Trade) else None for r in records]


@pytest.fixture
def router() -> Iterator[FakeRouter]:
    r = FakeRouter()
    yield r
    r.close()


@pytest.fixture
def feeds(tmp_path: Path) -> Iterator[list[Feed]]:
    started: list[Feed] = []
    yield started
    for feed in started:
        feed.close()


def start(feeds: list[Feed], tmp_path: Path, router: FakeRouter | None, *args: str, **kw: object) -> Feed:
    feed = Feed(tmp_path, router, *args, **kw)  # type: ignore[arg-type]
    feeds.append(feed)
    return feed


# -- sim -------------------------------------------------------------------------------
def test_sim_is_deterministic_end_to_end(router: FakeRouter, feeds: list[Feed], tmp_path: Path) -> None:
    argv = ["sim", "--seed", "5", "--start", "1767225600", "--duration", "1", "--rate", "3000", "--unpaced"]
    feed = start(feeds, tmp_path, router, *argv)
    assert feed.wait() == 0, feed.log()
    expected = [r for batch in Market(build_spec(build_parser().parse_args(argv))[0]) for r in batch]
    assert router.records == expected  # every record, in order, nothing lost at the end
    assert router.marks and router.bad_frames == 0


def test_the_same_seed_and_start_give_byte_identical_records_paced_or_not(tmp_path: Path) -> None:
    """Two real `tickmesh-feed sim` runs, paced on the wall clock, each captured by its own ingest socket."""
    base = ["sim", "--seed", "7", "--start", "1767225600", "--duration", "0.5", "--rate", "4000"]
    runs = []
    for argv in (base, base, [*base, "--unpaced"], [*base[:2], "8", *base[3:]]):
        router, started = FakeRouter(), list[Feed]()
        try:
            feed = start(started, tmp_path, router, *argv)
            assert feed.wait() == 0, feed.log()
            runs.append([encoder.encode(r) for r in router.records])
        finally:
            for f in started:
                f.close()
            router.close()
    first, again, unpaced, other_seed = runs
    assert len(first) > 1_000 and first == again == unpaced
    assert other_seed[: len(first)] != first


def test_sim_stops_on_sigterm_and_flushes(router: FakeRouter, feeds: list[Feed], tmp_path: Path) -> None:
    feed = start(feeds, tmp_path, router, "sim", "--rate", "5000", "--batch", "50")
    poll_until(lambda: len(router.records) > 3_000, 15, what="records from the sim")
    assert feed.stop() == 0
    line = next(x for x in feed.log().splitlines() if "sim done: sent" in x)
    sent = int(line.split("sent ")[1].split()[0])
    assert sent == len(router.records) and router.marks  # the last records were acknowledged, not lost
    kinds = {type(r) for r in router.records}
    assert kinds == {Trade, Bar, FairMarketValue}


def test_sim_refuses_an_impossible_rate(feeds: list[Feed], tmp_path: Path) -> None:
    feed = start(feeds, tmp_path, None, "sim", "--rate", "10", "--ohlcv-symbols", "8000", "--compression", "10")
    assert feed.wait() == EXIT_USAGE
    assert "OHLCV symbols alone" in feed.log()


# -- replay --------------------------------------------------------------------------------
def test_replay_sends_good_rows_and_reports_bad_ones(router: FakeRouter, feeds: list[Feed], tmp_path: Path) -> None:
    files = [DATA / n for n in ("daily_ohlcv.csv", "polygon_trades.csv", "polygon_minute_aggs.csv.gz")]
    feed = start(feeds, tmp_path, router, "replay", *map(str, files), "--ticker", "ACME", "--json")
    assert feed.wait() == 0, feed.log()
    summary = json.loads(feed.log().strip().splitlines()[-1])
    assert summary["files"] == 3 and summary["read"] == 11 + 4 + 3
    assert summary["rejected"] == 4 + 1 + 1 and summary["sent"] == 18 == len(router.records)
    assert "daily_ohlcv.csv:9: high: Expected `float` > 0.0" in summary["rejections"]
    assert "polygon_trades.csv:5: price: Expected `float` > 0.0" in summary["rejections"]
    assert [r.ticker for r in router.records[:11]] == ["ACME"] * 11


def test_replay_of_a_missing_file_fails_but_the_others_flow(
    router: FakeRouter, feeds: list[Feed], tmp_path: Path
) -> None:
    feed = start(feeds, tmp_path, router, "replay", str(tmp_path / "nope.csv"), str(DATA / "intraday_ohlcv.csv"))
    assert feed.wait() == 1
    assert len(router.records) == 4 and "failed" in feed.log() and "nope.csv" in feed.log()


def test_paced_replay_delivers_everything(router: FakeRouter, feeds: list[Feed], tmp_path: Path) -> None:
    # five minutes of bars at 1000x real time: paced, but still every bar
    feed = start(feeds, tmp_path, router, "replay", str(DATA / "intraday_ohlcv.csv"), "--speed", "1000")
    assert feed.wait() == 0, feed.log()
    assert len(router.records) == 4


# -- polygon -----------------------------------------------------------------------------------
def trades_frames(n: int, per_frame: int = 3) -> list[str]:
    """n frames of AAPL trades with q = 1, 2, 3, … and a rising price."""
    frames = []
    for f in range(n):
        qs = range(f * per_frame + 1, (f + 1) * per_frame + 1)
        frames.append(
            json.dumps(
                [{"ev": "T", "sym": "AAPL", "x": 4, "p": 100 + q / 10, "s": 10, "t": MS + q, "q": q} for q in qs]
            )
        )
    return frames


@pytest.fixture
def server() -> Iterator[list[PolygonServer]]:
    made: list[PolygonServer] = []
    yield made
    for s in made:
        s.close()


def polygon(
    feeds: list[Feed], tmp_path: Path, router: FakeRouter, srv: PolygonServer, *extra: str, key: str = "test-key"
) -> Feed:
    return start(
        feeds,
        tmp_path,
        router,
        "polygon",
        "--url",
        srv.url,
        "--subscribe",
        "T.AAPL,AM.*",
        "--backoff-initial",
        "0.05",
        "--backoff-max",
        "0.2",
        *extra,
        env={"POLYGON_API_KEY": key},
    )


def test_polygon_reconnects_resubscribes_and_drops_replayed_trades(
    router: FakeRouter, feeds: list[Feed], tmp_path: Path, server: list[PolygonServer]
) -> None:
    frames = trades_frames(20)
    frames.insert(5, "{this is not json")
    # first connection dies after 12 frames; the second replays from frame 8 (4 frames already seen)
    srv = PolygonServer(frames, plans=[Plan(0, 12, "close"), Plan(8, None, "hold")]).start()
    server.append(srv)
    record = tmp_path / "session.jsonl"
    feed = polygon(feeds, tmp_path, router, srv, "--record", str(record))
    poll_until(lambda: len(router.records) >= 60, 15, what="all 60 trades")
    assert feed.stop() == 0
    assert sequences(router.records) == list(range(1, 61))  # each once, in order
    assert srv.connections == 2 and srv.subscriptions == ["T.AAPL,AM.*"] * 2 and srv.auths == ["test-key"] * 2
    log = feed.log()
    assert "frame 9: not JSON" in log  # the frame number counts status frames too (3 before the data)
    assert "duplicates.T 12" in log and "reconnects 1" in log
    recorded = record.read_text().splitlines()
    assert len(recorded) == 3 + 12 + 3 + 13  # statuses and frames of both connections, bad one included

    # the recording replays to the same records: duplicates dropped again, the bad frame reported
    again = FakeRouter()
    try:
        replay = start(feeds, tmp_path, again, "replay", str(record), "--json")
        assert replay.wait() == 0, replay.log()
        assert [r.sequence for r in again.records] == list(range(1, 61))  # type: ignore[union-attr]
        summary = json.loads(replay.log().strip().splitlines()[-1])
        assert summary["rejected"] == 1 and summary["duplicates"] == 12
    finally:
        again.close()


def test_polygon_auth_failure_exits_4_without_retrying(
    router: FakeRouter, feeds: list[Feed], tmp_path: Path, server: list[PolygonServer]
) -> None:
    srv = PolygonServer(trades_frames(3)).start()
    server.append(srv)
    feed = polygon(feeds, tmp_path, router, srv, "--log-level", "DEBUG", key="wrong-secret-key")
    assert feed.wait(10) == EXIT_AUTH
    log = feed.log()
    assert "authentication failed" in log and "Not retrying" in log
    assert "wrong-secret-key" not in log  # the key is never logged, not even at DEBUG
    assert srv.connections == 1 and router.records == []


def test_polygon_without_a_key_says_so(router: FakeRouter, feeds: list[Feed], tmp_path: Path) -> None:
    feed = start(feeds, tmp_path, router, "polygon", "--url", "ws://127.0.0.1:9", "--key-env", "NO_SUCH_KEY_VAR")
    assert feed.wait(10) == EXIT_AUTH and "set $NO_SUCH_KEY_VAR" in feed.log()


def test_polygon_silent_server_is_reconnected(
    router: FakeRouter, feeds: list[Feed], tmp_path: Path, server: list[PolygonServer]
) -> None:
    srv = PolygonServer(trades_frames(6), plans=[Plan(0, 2, "silent"), Plan(2, None, "hold")]).start()
    server.append(srv)
    feed = polygon(feeds, tmp_path, router, srv, "--silence-timeout", "0.5")
    poll_until(lambda: len(router.records) >= 18, 15, what="trades after the silence")
    assert feed.stop() == 0
    assert sequences(router.records) == list(range(1, 19))
    assert "nothing for 0.5 s" in feed.log() and srv.connections == 2


def test_polygon_keeps_retrying_while_the_server_is_down(
    router: FakeRouter, feeds: list[Feed], tmp_path: Path, server: list[PolygonServer]
) -> None:
    srv = PolygonServer(trades_frames(2)).start()
    url = srv.url
    srv.close()  # nobody listens there now
    feed = start(
        feeds,
        tmp_path,
        router,
        "polygon",
        "--url",
        url,
        "--backoff-initial",
        "0.05",
        "--backoff-max",
        "0.1",
        env={"POLYGON_API_KEY": "k"},
    )
    poll_until(lambda: feed.log().count("reconnecting in") >= 3, 15, what="reconnect attempts")
    assert feed.proc.poll() is None  # still trying
    assert feed.stop() == 0
    assert "polygon done: " in feed.log() and "disconnects" in feed.log()


def test_every_feed_has_help() -> None:
    for sub in ("sim", "replay", "polygon"):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([sub, "--help"])
        assert exit_.value.code == 0


# -- through the real mesh: records in, events out ----------------------------------------------
def kind_of(publication: Publication) -> str:
    return str(publication.event.__struct_config__.tag)  # type: ignore[attr-defined]


def reference_ohlcv_events(bars: list[Bar]) -> set[tuple[str, str, int]]:
    """The OHLCV rules of issue 3 in their plainest form: (kind, ticker, bar end) per event."""
    events: set[tuple[str, str, int]] = set()
    volumes: dict[str, list[float]] = {}
    for b in bars:
        pct = (b.close - b.open) / b.open * 100
        if abs(pct) > 2:
            events.add(("big_move", b.ticker, b.end))
        if b.close == b.high and b.high != b.low and abs(pct) >= 1:
            events.add(("high", b.ticker, b.end))
        if b.close == b.low and b.high != b.low and abs(pct) >= 1:
            events.add(("low", b.ticker, b.end))
        previous = volumes.setdefault(b.ticker, [])[-10:]
        if len(previous) >= 5 and b.volume > 3 * sum(previous) / len(previous):
            events.add(("volume_surge", b.ticker, b.end))
        volumes[b.ticker].append(b.volume)
    return events


def test_replay_of_a_daily_csv_yields_exactly_the_rules_ohlcv_events(
    mesh: Mesh, feeds: list[Feed], tmp_path: Path
) -> None:
    path = DATA / "daily_ohlcv.csv"
    with open(path) as f:
        bars = [r for _, r in ohlcv(f, "ACME", None) if isinstance(r, Bar)]
    expected = reference_ohlcv_events(bars)
    kinds = {k for k, _, _ in expected}
    assert kinds == {"big_move", "high", "low", "volume_surge"} and len(expected) == 8  # the file exercises all
    sub = mesh.subscriber()
    feed = start(feeds, tmp_path, None, "replay", str(path), "--ticker", "ACME", config=str(mesh.config_path))
    assert feed.wait() == 0, feed.log()
    received = collect(sub, lambda got: len(got) >= len(expected), timeout=15) + drain(sub)
    assert {(kind_of(p), p.event.ticker, p.event.time) for p in received} == expected
    assert len(received) == len(expected) and {p.event.source for p in received} == {"ohlcv"}
    big = {p.event.time: p.event for p in received if isinstance(p.event, BigMove)}
    for b in bars:
        if b.end in big:
            assert big[b.end].pct == pytest.approx((b.close - b.open) / b.open * 100, abs=1e-6)
            assert big[b.end].direction == ("up" if b.close > b.open else "down")


def test_sim_through_the_mesh_yields_events_of_every_channel(mesh: Mesh, feeds: list[Feed], tmp_path: Path) -> None:
    sub = mesh.subscriber()
    feed = start(feeds, tmp_path, None, "sim", "--seed", "3", config=str(mesh.config_path))

    def every_channel(got: list[Publication]) -> bool:
        kinds = {(p.event.source, kind_of(p)) for p in got}
        return {("fmv", "fmv_deviation"), ("ohlcv", "big_move"), ("ohlcv", "volume_surge")} <= kinds and bool(
            kinds & {("tick", "high"), ("tick", "low")}
        )

    received = collect(sub, every_channel, timeout=30)
    assert feed.stop() == 0
    assert len({p.event.id for p in received}) == len(received)  # no duplicate ids
    counters = mesh.counters()
    assert not {k: v for k, v in counters.items() if ".rejected." in k}  # the sim never sends anything invalid


def test_polygon_through_the_mesh_after_a_reconnect_yields_each_high_once(
    mesh: Mesh, feeds: list[Feed], tmp_path: Path, server: list[PolygonServer]
) -> None:
    # 30 trades, 2 s apart, each 0.3 % above the last: every trade after the first is a new session high,
    # and no 5 s move reaches the surge band (2.5 % or $1.50)
    frames = [
        json.dumps(
            [{"ev": "T", "sym": "ACME", "x": 4, "p": round(100 * 1.003**q, 4), "s": 10, "t": MS + q * 2_000, "q": q}]
        )
        for q in range(1, 31)
    ]
    frames.insert(10, '[{"ev":"T","sym":"ACME","p":"NaN"}]')
    srv = PolygonServer(frames, plans=[Plan(0, 20, "close"), Plan(12, None, "hold")]).start()
    server.append(srv)
    sub = mesh.subscriber()
    feed = start(
        feeds,
        tmp_path,
        None,
        "polygon",
        "--url",
        srv.url,
        "--subscribe",
        "T.ACME",
        "--backoff-initial",
        "0.05",
        config=str(mesh.config_path),
        env={"POLYGON_API_KEY": "test-key"},
    )
    received = collect(sub, lambda got: len(got) >= 29, timeout=20) + drain(sub)
    assert feed.stop() == 0
    highs = sorted(p.event.time for p in received if kind_of(p) == "high")
    assert highs == [(MS + q * 2_000) * 1_000_000 for q in range(2, 31)] and len(received) == 29
    assert mesh.counters()["tick.received"] == 30  # the 8 replayed trades never reached the router
    assert srv.connections == 2
