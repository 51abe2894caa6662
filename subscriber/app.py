"""`tickmesh-subscribe`: print published events as readable lines or JSON lines."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

from journal.backends import open_store
from journal.query import QueryError
from journal.store import StoreError
from subscriber.client import Subscriber, as_dict
from subscriber.history import HistoryError, HistoryThenLive
from tickmesh import sched
from tickmesh.cli import EXIT_USAGE
from tickmesh.config import with_endpoints
from tickmesh.curve import secure_context
from tickmesh.runtime import StopFlag, endpoint_exit, parser, start
from tickmesh.schema import EVENT_KINDS, Publication
from tickmesh.sockets import EndpointError

STOPPING_GRACE_S = 0.5  # at stop: how long to wait for the aggregator to say it is stopping too
STOP_MARGIN_S = 1.0  # at stop: following the aggregator ends this long before the stop grace
ENVELOPE = {"id", "kind", "ticker", "source", "priority", "time", "price", "record_seq", "ingest_ns", "detected_ns"}


def readable(publication: Publication) -> str:
    """`12:30:01.250  #42 tick  high          AAPL     190.5500  previous=190.31 count=3`"""
    event = as_dict(publication)
    clock = time.strftime("%H:%M:%S", time.gmtime(publication.event.time / 1e9))
    millis = publication.event.time // 1_000_000 % 1_000
    extra = " ".join(f"{k}={_short(v)}" for k, v in event.items() if k not in ENVELOPE and k not in _PUB)
    return (
        f"{clock}.{millis:03d} #{publication.seq:<6} {event['source']:<5} {event['kind']:<13} "
        f"{event['ticker']:<8} {publication.event.price:>11.4f}  {extra}"
    )


_PUB = {"seq", "epoch", "published_ns"}


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def follow_to_end(
    source: Subscriber | HistoryThenLive, sub: Subscriber, show: Callable[[Publication], None], budget_s: float
) -> None:
    """Stopping with the aggregator (a whole-mesh stop, as `honcho start` stops): print what it still
    publishes while the workers flush, up to its final heartbeat, within `budget_s`. Alone (it does not
    say it is stopping within STOPPING_GRACE_S): stop at once."""
    started = time.monotonic()
    while not sub.at_end() and time.monotonic() < started + budget_s:
        if not sub.stopping() and time.monotonic() >= started + STOPPING_GRACE_S:
            return
        publication = source.recv(timeout_ms=50)
        if publication is not None:
            show(publication)
    if sub.stopping() and not sub.at_end():
        print(f"subscribe: stopping before the aggregator's last event (received up to seq {sub.last_seq} of epoch "
              f"{sub.epoch})", file=sys.stderr)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = parser("tickmesh-subscribe", "Print the mesh's published events.")
    p.add_argument("--publish", help="aggregator PUB endpoint (default from config)")
    p.add_argument("--replay", help="aggregator replay endpoint (default from config)")
    p.add_argument("--kind", action="append", default=[], choices=EVENT_KINDS, help="only this kind (repeatable)")
    p.add_argument("--ticker", action="append", default=[], help="only this ticker (repeatable)")
    p.add_argument("--last", type=int, default=0, help="start with the last N events from the replay ring")
    p.add_argument("--since", help="first the journal's events from this data time (2026-11-30, -15m), then live")
    p.add_argument("--count", type=int, default=0, help="exit after N events (default: run until stopped)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--silence", type=float, default=5.0, help="warn when nothing arrives for this many seconds")
    args = p.parse_args(argv)
    config = start(args, "subscribe")
    if config is None:
        return EXIT_USAGE
    if args.since and args.last:
        print("subscribe: --since and --last do not combine (--since already starts with history)", file=sys.stderr)
        return EXIT_USAGE
    # the tick path's last hop: scheduled like the P1 path (`[process] slice_us`, `realtime`), before any thread
    sched.apply(config, "subscriber")
    config = with_endpoints(config, publish=args.publish, replay=args.replay)
    ep = config.endpoints
    stop = StopFlag()
    ctx = secure_context(config, "subscriber")
    try:
        if args.since:  # the live part unfiltered: the seam is found by sequence number
            sub = Subscriber(ep.publish, replay=ep.replay, ctx=ctx)
            source: Subscriber | HistoryThenLive = HistoryThenLive(
                sub,
                open_store(config, os.environ, create=False),
                args.since,
                kinds=args.kind,
                tickers=args.ticker,
                run=config.journal.run,
            )
        else:
            sub = source = Subscriber(
                ep.publish, replay=ep.replay, kinds=args.kind, tickers=args.ticker, last=args.last, ctx=ctx
            )
    except (EndpointError, QueryError, StoreError, HistoryError) as exc:
        print(f"subscribe: {exc}", file=sys.stderr)
        ctx.destroy(linger=0)
        return endpoint_exit(exc) if isinstance(exc, EndpointError) else EXIT_USAGE
    seen, warned = 0, False

    def show(publication: Publication) -> None:
        nonlocal seen
        seen += 1
        print(json.dumps(as_dict(publication)) if args.json else readable(publication), flush=True)

    try:
        while not stop and (not args.count or seen < args.count):
            publication = source.recv(timeout_ms=200)
            if publication is None:
                if sub.silent_for() > args.silence and not warned:
                    print(f"subscribe: nothing from {ep.publish} for {args.silence:g} s", file=sys.stderr)
                    warned = True
                continue
            warned = False
            show(publication)
        if stop:
            follow_to_end(source, sub, show, config.process.stop_budget(STOP_MARGIN_S))
    except BrokenPipeError:
        pass
    finally:
        source.close()
        if sub.gaps:
            print(f"subscribe: {sub.gaps} gaps, {sub.missed} events missed, {sub.lost} lost", file=sys.stderr)
        ctx.term()
    return 0
