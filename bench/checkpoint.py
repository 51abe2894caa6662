"""What a checkpoint costs the detection loop with many warm tick symbols: `python -m bench.checkpoint [--symbols N]`.

Before the shard store (workers/store.py) a checkpoint encoded every ticker's
state on the loop and wrote one file; now the loop only copies the rows of the
tickers touched since the last checkpoint (`export_changes`) and a background
thread writes them to SQLite. This measures, on warm state, the loop's part
for several shares of touched tickers, the whole-state encoding the loop used
to do, and the writer's time (off the loop). Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tickmesh.config import TickChannel
from tickmesh.schema import Trade
from workers.snapshot import export_changes
from workers.store import Job, Store, store_path
from workers.tick_rules import TickDetector

DAY_NS = 86_400 * 1_000_000_000
T0 = 20_000 * DAY_NS + 14 * 3_600 * 1_000_000_000


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
    with tempfile.TemporaryDirectory() as folder:
        store = Store(store_path(folder, "tick", 0))
        for share in (0.01, 0.1, 1.0):
            loop, write = [], []
            for _ in range(repeats):
                det.dirty = set(tickers[: max(1, int(len(tickers) * share))])
                started = time.perf_counter()
                job = Job(1, 0, export_changes(det), [])
                loop.append(time.perf_counter() - started)
                started = time.perf_counter()
                store.submit(job)
                while store.busy:
                    list(store.finished())
                    time.sleep(0.0005)
                write.append(time.perf_counter() - started)
            out[f"loop_ms_{int(share * 100)}pct_touched"] = median_ms(loop)
            out[f"writer_ms_{int(share * 100)}pct_touched"] = median_ms(write)
        store.close()
        out["store_mb"] = round(sum(p.stat().st_size for p in Path(folder).glob("tick-0.db*")) / 1e6, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.checkpoint", description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=100_000, help="warm tick symbols (default 100000)")
    p.add_argument("--repeats", type=int, default=5, help="runs per figure; the median is reported (default 5)")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.symbols, args.repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
