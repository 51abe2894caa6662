"""`tickmesh-feed sim`: the default synthetic market, paced on the wall clock, pushed to the router."""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from feeds.market import OHLCV_NAMES, TICK_NAMES, Market, MarketSpec, symbol_names
from feeds.pump import Pacer, Sender, sleep
from feeds.session import SessionDays
from tickmesh.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from tickmesh.config import Config
from tickmesh.schema import Ticker, check_ticker, encoder

log = logging.getLogger(__name__)
STATS_S = 10.0


@dataclass(frozen=True)
class Scenario:
    """A load preset of the design: rates are per minute of *market* (event) time."""

    tick: int
    ohlcv: int
    fmv: int
    per_minute: int
    minutes: float
    volatility: float
    history_bars: int


SCENARIOS = {
    "market_open_surge": Scenario(
        tick=100, ohlcv=8_000, fmv=20, per_minute=50_000, minutes=5, volatility=2.0, history_bars=5
    ),
    "steady_state": Scenario(
        tick=500, ohlcv=8_000, fmv=50, per_minute=10_000, minutes=30, volatility=1.0, history_bars=5
    ),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=float, help="records per wall-clock second (default 2000; a scenario: its rate)")
    p.add_argument("--compression", type=float, help="event time runs this many times faster (default 10; scenarios 1)")
    p.add_argument("--tick-symbols", help="how many tick symbols, or a comma list (default 20)")
    p.add_argument("--ohlcv-symbols", help="how many OHLCV symbols, or a comma list (default 50)")
    p.add_argument("--fmv-symbols", help="how many FMV symbols (the first tick symbols), or a comma list (default 5)")
    p.add_argument("--duration", type=float, help="stop after this many wall-clock seconds (default: forever)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same market (default 0)")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), help="a load preset (flags given override it)")
    p.add_argument("--batch", type=int, default=100, help="records per message (default 100)")
    p.add_argument("--start", type=float, help="first event time, Unix seconds (default: a new session day per run)")
    p.add_argument("--bar-seconds", type=int, default=60, help="OHLCV bar length in event seconds (default 60)")
    p.add_argument("--history-bars", type=int, help="bars per OHLCV symbol before start (default 10; scenarios 5)")
    p.add_argument("--unpaced", action="store_true", help="send as fast as the router takes it (benchmarks)")
    p.add_argument("--dry-run", action="store_true", help="generate and encode without sending; print the speed")


def _symbols(value: str | None, default: int, known: list[str], prefix: str) -> tuple[str, ...]:
    if value is None:
        return symbol_names(default, known, prefix)
    if value.strip().isdigit():
        return symbol_names(int(value), known, prefix)
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    try:
        for i, name in enumerate(msgspec.convert(names, tuple[Ticker, ...])):
            check_ticker(name, f"$[{i}]")
    except ValueError as exc:  # msgspec.ValidationError too
        raise ValueError(f"bad symbol in {value!r}: {exc}") from None
    return names


def build_spec(args: argparse.Namespace, start_ns: int | None = None) -> tuple[MarketSpec, float, float]:
    """The market the flags describe, the wall-clock rate and the compression; ValueError if inconsistent.

    The event time starts at `--start`, else at `start_ns` (the run's session, feeds/session.py), else now.
    """
    sc = SCENARIOS.get(args.scenario or "")
    compression = args.compression or (1.0 if sc else 10.0)
    if compression <= 0:
        raise ValueError("--compression must be positive")
    rate = args.rate or (sc.per_minute / 60 * compression if sc else 2_000.0)
    tick = _symbols(args.tick_symbols, sc.tick if sc else 20, TICK_NAMES, "T")
    ohlcv = _symbols(args.ohlcv_symbols, sc.ohlcv if sc else 50, OHLCV_NAMES, "B")
    if args.fmv_symbols is None or args.fmv_symbols.strip().isdigit():
        count = int(args.fmv_symbols) if args.fmv_symbols else (sc.fmv if sc else 5)
        fmv = tick[: min(count, len(tick))]
    else:
        fmv = _symbols(args.fmv_symbols, 0, [], "")
    duration = sc.minutes * 60 if sc else None
    if args.duration is not None:
        duration = args.duration * compression
    history = args.history_bars if args.history_bars is not None else (sc.history_bars if sc else 10)
    if args.start is not None:
        start = int(args.start * 1e9)
    else:
        start = start_ns if start_ns is not None else time.time_ns()
    spec = MarketSpec(
        tick_symbols=tick,
        ohlcv_symbols=ohlcv,
        fmv_symbols=fmv,
        event_rate=rate / compression,
        start_ns=start,
        seed=args.seed,
        slice_records=max(1, args.batch),
        bar_seconds=args.bar_seconds,
        history_bars=max(0, history),
        duration_s=duration,
        volatility=sc.volatility if sc else 1.0,
    )
    return spec, rate, compression


def run(args: argparse.Namespace, config: Config, is_stopped: Callable[[], bool]) -> int:
    """Generate and send until the duration is over or we are stopped; flush; 0 on success."""
    days = None
    if args.start is None and not args.dry_run:  # each run trades a session of its own
        days = SessionDays(config.state.dir, config.channels.tick.rules.session_start_s)
    try:
        spec, rate, compression = build_spec(args, days.start_ns() if days else None)
    except ValueError as exc:
        log.error("sim: %s", exc)
        return EXIT_USAGE
    market = Market(spec)
    log.info(
        "sim: %d tick, %d OHLCV, %d FMV symbols; %.0f records/s, compression %g, seed %d%s",
        len(spec.tick_symbols),
        len(spec.ohlcv_symbols),
        len(spec.fmv_symbols),
        rate,
        compression,
        spec.seed,
        f", scenario {args.scenario}" if args.scenario else "",
    )
    log.info("sim: event time starts at %s UTC", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(spec.start_ns / 1e9)))
    if args.dry_run:
        return _dry_run(market, is_stopped)
    sender = Sender(config, args.batch, is_stopped, name=f"sim-{spec.seed}-{time.monotonic_ns() % 1_000_000}")
    pacer = None if args.unpaced else Pacer(compression, origin_ns=spec.start_ns)
    kinds: Counter[str] = Counter()
    began = last_log = time.monotonic()
    for records in market:
        if pacer is not None and not sleep(pacer.delay(market.clock_ns), is_stopped):
            break
        if not sender.send(records):
            break
        kinds.update(type(r).__name__ for r in records)
        if days is not None:
            days.reached(market.clock_ns)
        if time.monotonic() - last_log >= STATS_S:
            last_log = time.monotonic()
            _log_stats(kinds, sender.sent, last_log - began, market.clock_ns - spec.start_ns)
        if is_stopped():
            break
    flushed = sender.finish()
    _log_stats(kinds, sender.sent, time.monotonic() - began, market.clock_ns - spec.start_ns, final=True)
    return EXIT_OK if flushed or is_stopped() else EXIT_FAILURE


def _log_stats(kinds: Counter[str], sent: int, wall_s: float, event_ns: int, final: bool = False) -> None:
    log.info(
        "sim%s: sent %d records (%d trades, %d bars, %d fmv) in %.1f s = %.0f/s; event time +%.0f s",
        " done" if final else "",
        sent,
        kinds["Trade"],
        kinds["Bar"],
        kinds["FairMarketValue"],
        wall_s,
        sent / wall_s if wall_s > 0 else 0.0,
        event_ns / 1e9,
    )


def _dry_run(market: Market, is_stopped: Callable[[], bool]) -> int:
    """Generate (and encode, as sending would) without a router: measures the generator."""
    n, began = 0, time.perf_counter()
    for records in market:
        encoder.encode(records)
        n += len(records)
        if is_stopped() or (market.end_ns is None and time.perf_counter() - began > 10):
            break
    wall = time.perf_counter() - began
    print(f"sim dry run: generated and encoded {n} records in {wall:.2f} s = {n / wall:,.0f} records/s")
    return 0
