"""What checkpoints cost with many warm tick symbols: `python -m bench.checkpoint [--symbols N] [--mesh [--code DIR]]`.

Before the shard store (workers/store.py) a checkpoint encoded every ticker's
state on the loop and wrote one file; now the loop encodes only the rows of the
tickers touched since the last checkpoint, a slice a turn (`Cut`), and a
background thread writes them to SQLite as they come, in one transaction.
This measures, on warm state, the loop's part for several shares of touched
tickers, taken as a shard takes it (the sum of the cut and its slices, and the
longest of them: how long the loop stops at most), the whole-state encoding
the loop used to do, and the time from the cut until the checkpoint is durable. With `--mesh` it runs a real mesh
instead (router, tick workers, aggregator; `--code DIR` runs another source tree,
e.g. a checkout of the commit before the store, for an A/B): warms the symbols,
keeps trading them while a few probe symbols make a new high every trade, and
reports the probes' end-to-end latency (router ingest → publication) while
checkpoints run. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from subscriber.client import Subscriber
from tickmesh.config import Config, TickChannel, load_config, to_toml
from tickmesh.producer import Producer
from tickmesh.schema import Trade
from workers.shard import CUT_ROWS
from workers.snapshot import Cut
from workers.store import CHUNK_ROWS, Position, Store, store_path
from workers.tick_rules import TickDetector

DAY_NS = 86_400 * 1_000_000_000
S_NS = 1_000_000_000
T0 = 20_000 * DAY_NS + 14 * 3_600 * 1_000_000_000
PROBES = 20  # symbols that make a new high every trade: the events whose latency is measured
WARM_TRADES = 3
STEP_EVENT_NS = 100_000_000  # event time per 10 ms step: a probe trades every PROBES steps, 2 s apart (cooldown 1 s)


def warm(symbols: int, trades_per_symbol: int) -> TickDetector:
    """A detector with `symbols` tickers, each with a few minutes of trades in its windows."""
    det = TickDetector(TickChannel())
    for k in range(trades_per_symbol):
        for s in range(symbols):
            det.process(Trade(f"S{s}", 50.0 + (k * 7 + s) % 13 / 10, 100.0, T0 + k * 5_000_000_000 + s), 0, 0, 0)
    return det


def median_ms(runs: list[float]) -> float:
    return round(statistics.median(runs) * 1e3, 2)


def measure(symbols: int, repeats: int) -> dict[str, object]:
    det = warm(symbols, 40)
    out: dict[str, object] = {"symbols": symbols}
    full = []
    for _ in range(repeats):
        started = time.perf_counter()
        det.snapshot()
        full.append(time.perf_counter() - started)
    out["whole_state_encode_ms"] = median_ms(full)  # what the loop did per checkpoint before
    tickers = det.tickers()
    out["row_bytes"] = round(statistics.mean(len(det.row(t) or b"") for t in tickers))
    with tempfile.TemporaryDirectory() as folder:
        store = Store(store_path(folder, "tick", 0))
        for share in (0.01, 0.1, 1.0):
            loop, whole, longest = [], [], []
            for _ in range(repeats):
                det.dirty = set(tickers[: max(1, int(len(tickers) * share))])
                started = time.perf_counter()
                stops = _checkpoint(det, store)
                whole.append(time.perf_counter() - started)
                loop.append(sum(stops))
                longest.append(max(stops))
            out[f"loop_ms_{int(share * 100)}pct_touched"] = median_ms(loop)
            out[f"longest_stop_ms_{int(share * 100)}pct_touched"] = median_ms(longest)
            out[f"durable_ms_{int(share * 100)}pct_touched"] = median_ms(whole)
        store.close()
        out["store_mb"] = round(sum(p.stat().st_size for p in Path(folder).glob("tick-0.db*")) / 1e6, 1)
    return out


def _checkpoint(det: TickDetector, store: Store) -> list[float]:
    """A checkpoint taken as a shard takes it (the cut, then CUT_ROWS rows a turn while the writer is
    not behind, its rows streamed to the writer), until it is durable: how long each of the loop's
    parts stopped it."""
    started = time.perf_counter()
    store.begin(det.cleared)
    cut = Cut(det, store.write, CHUNK_ROWS)
    stops = [time.perf_counter() - started]
    done = False
    while not done:
        if store.behind:
            time.sleep(0.0005)  # (a shard reads its input meanwhile)
            continue
        started = time.perf_counter()
        done = cut.step(CUT_ROWS)
        stops.append(time.perf_counter() - started)
    store.commit(cut.header, [Position(1, 0)])
    while store.busy:
        list(store.finished())
        time.sleep(0.0005)
    return stops


def run_mesh(symbols: int, rate: float, seconds: float, code: str | None) -> dict[str, object]:
    """The probes' latency through a real mesh whose tick worker holds `symbols` warm symbols."""
    folder = Path(tempfile.mkdtemp(prefix="tmck-"))
    names = ("ingest", "sync", "acks", "tick", "ohlcv", "fmv", "events", "publish", "replay",
             "control_config", "control_status")  # fmt: skip
    endpoints = {n: f"ipc://{folder}/{n}" for n in names}
    config = folder / "tickmesh.toml"
    config.write_text(to_toml({"endpoints": endpoints, "state": {"checkpoint_s": 1.0}}))
    env = dict(os.environ, PYTHONPATH=code or str(Path(__file__).resolve().parents[1]))
    procs = [
        subprocess.Popen([sys.executable, "-m", module, *extra, "--config", str(config)], cwd=folder, env=env,
                         stdout=subprocess.DEVNULL, stderr=open(folder / f"{module}.log", "wb"))  # noqa: SIM115
        for module, extra in (("router", []), ("workers", ["tick"]), ("aggregator", []))
    ]  # fmt: skip
    ctx = zmq.Context()
    try:
        return _drive(ctx, load_config(str(config), env={}), symbols, rate, seconds)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(15)
        ctx.destroy(linger=0)
        shutil.rmtree(folder, ignore_errors=True)


def _drive(ctx: zmq.Context, config: Config, symbols: int, rate: float, seconds: float) -> dict[str, object]:  # type: ignore[type-arg]
    producer = Producer(ctx, config.endpoints, name="checkpoint-bench")
    sub = Subscriber(config.endpoints.publish, ctx=ctx, tickers=[f"P{p}" for p in range(PROBES)])
    start = T0 - 2 * DAY_NS  # history: no staleness or future checks apply
    for k in range(WARM_TRADES):  # warm every symbol (the ones the worker keeps and checkpoints)
        for i in range(0, symbols, 1_000):
            producer.send([Trade(f"S{s}", 50.0 + (k * 7 + s) % 13 / 10, 100.0, start + k * 5 * S_NS + s)
                           for s in range(i, min(symbols, i + 1_000))])  # fmt: skip
        producer.flush(120)
    clock = start + WARM_TRADES * 5 * S_NS
    producer.send([Trade("READY", 10.0, 1.0, clock), Trade("READY", 11.0, 1.0, clock + 2 * S_NS)])
    ready = Subscriber(config.endpoints.publish, ctx=ctx, tickers=["READY"])
    if ready.recv(timeout_ms=300_000) is None:  # behind the warm-up in the stream: the worker has caught up
        raise RuntimeError("the warm-up was not processed in 5 minutes")
    ready.close()
    time.sleep(3)  # the warm-up's own checkpoints (every row is new) are written before measuring
    latencies: list[int] = []
    clock, s, step = clock + 3 * S_NS, 0, 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        batch: list[Trade] = []
        n = int(rate / 100)
        for _ in range(n):  # 10 ms of the background load, spread over every symbol (100 ms of event time)
            batch.append(Trade(f"S{s}", 50.0 + s % 13 / 10, 100.0, clock))
            s, clock = (s + 1) % symbols, clock + STEP_EVENT_NS // n
        step += 1
        probe = step % PROBES
        batch.append(Trade(f"P{probe}", 100.0 * 1.005 ** (step // PROBES), 100.0, clock))  # a new high
        producer.send(batch)
        while (publication := sub.recv(timeout_ms=1)) is not None:
            latencies.append(publication.published_ns - publication.event.ingest_ns)
        time.sleep(max(0.0, began + step * 0.01 - time.monotonic()))
    producer.close()
    sub.close()
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6, 2)  # noqa: E731
    return {"symbols": symbols, "rate": rate, "seconds": seconds, "probe_events": len(latencies),
            "latency_ms_p50": pick(0.5), "latency_ms_p99": pick(0.99), "latency_ms_max": pick(1.0)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.checkpoint", description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=100_000, help="warm tick symbols (default 100000)")
    p.add_argument("--repeats", type=int, default=5, help="runs per figure; the median is reported (default 5)")
    p.add_argument("--mesh", action="store_true", help="measure through a real mesh instead (see above)")
    p.add_argument("--code", help="with --mesh: the source tree the mesh processes run (default this one)")
    p.add_argument("--rate", type=float, default=20_000, help="with --mesh: background trades/s (default 20000)")
    p.add_argument("--seconds", type=float, default=20, help="with --mesh: seconds measured (default 20)")
    args = p.parse_args(argv)
    if args.mesh:
        result = run_mesh(args.symbols, args.rate, args.seconds, args.code)
    else:
        result = measure(args.symbols, args.repeats)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
