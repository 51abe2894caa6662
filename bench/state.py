"""Tick state per symbol in one process, no mesh: `python -m bench.state [--symbols 8000,40000] [--cpu]`.

A TickDetector (default rules) gets the memory part's warm-up history
(`bench.workload.warm_history`: 140 trades per symbol, a trade in every trend
bucket and surge slot) for the first symbol count, then for the rest; the
figures are the process's RSS growth per symbol (allocator overhead included)
and the detector's own bytes per symbol by tracemalloc (within the first count),
plus the size of one warm ticker's state (the object, its two ring arrays) and
of its checkpoint row. Unlike the mesh's memory part it holds no queues or
buffers, so it gives the same figures on a busy host. `--cpu` reports instead
the detector's CPU ns per record on three streams: the warm-up history (every
trade starts a trend bucket or a surge slot), trades that each start a surge
slot, and trades 25 to a slot (mostly the hot path). `--through batches` or
`--through store` reports instead the RSS per symbol of the shard's own path
in one process: the same history decoded from stream batches as a shard
decodes them, and with a checkpoint to a real store every second (after the
last, memory is given back as the shard does).
Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import msgspec
import psutil

from bench.workload import Mix, Workload, warm_history
from tickmesh.config import TickChannel
from tickmesh.runtime import release_memory, steady_heap
from tickmesh.schema import Trade, worker_input_decoder
from workers.snapshot import export_changes
from workers.store import Position, Store, store_path
from workers.tick_rules import TickDetector

END_NS = 1_767_225_600 * 1_000_000_000 + 15 * 3_600 * 1_000_000_000  # a trading afternoon


def warm(det: TickDetector, first: int, last: int) -> None:
    """Symbols first..last-1 warmed as the memory part warms them, then checkpointed (no dirty marks)."""
    names = [f"T{i:06d}" for i in range(first, last)]
    for frame in warm_history(names, [], END_NS):
        for record in frame:
            if record[0] == "T":
                det.process(Trade(*record[1:5]), 0, 0, 0)
    export_changes(det)
    gc.collect()


def measure(small: int, large: int) -> dict[str, Any]:
    proc, det = psutil.Process(), TickDetector(TickChannel())
    idle = proc.memory_info().rss
    tracemalloc.start()
    warm(det, 0, 10)  # what the first symbols allocate once (the detector's own tables) is not per symbol
    base = tracemalloc.get_traced_memory()[0]
    warm(det, 10, small)
    traced = (tracemalloc.get_traced_memory()[0] - base) / (small - 10)
    tracemalloc.stop()
    at_small = proc.memory_info().rss
    warm(det, small, large)
    at_large = proc.memory_info().rss
    st = det.states["T000000"]
    return {
        "symbols": [small, large],
        f"rss_bytes_per_symbol_first_{small}": round((at_small - idle) / small),
        f"rss_bytes_per_symbol_{small}_to_{large}": round((at_large - at_small) / (large - small)),
        "traced_bytes_per_symbol": round(traced),
        "warm_symbol_arrays": {"state": sys.getsizeof(st), "tr": sys.getsizeof(st.tr), "sr": sys.getsizeof(st.sr)},
        "row_bytes": len(det.row("T000000") or b""),
    }


def stream(symbols: int, start_ns: int, seed: int, frames: int) -> list[Trade]:
    """100 trades every 20 ms over `symbols` warm symbols, `frames` times (3,000: 60 s of event time)."""
    w = Workload(Mix(tick_symbols=symbols, ohlcv_symbols=0, fmv_symbols=0, trade_share=1.0, fmv_share=0.0, seed=seed))
    return [Trade(*r[1:5]) for k in range(frames) for r in w.trades(100, start_ns + k * 20_000_000)]


def cpu(symbols: int = 2_000, frames: int = 3_000) -> dict[str, int]:
    """CPU ns per record of TickDetector.process on the three streams, in this order, one detector."""
    det = TickDetector(TickChannel())
    names = [f"T{i:06d}" for i in range(symbols)]
    history = [Trade(*r[1:5]) for frame in warm_history(names, [], END_NS) for r in frame if r[0] == "T"]
    slots = stream(symbols, END_NS + 2_000_000_000, 0, frames)  # each symbol every 400 ms: a slot per trade
    steady = stream(50, END_NS + 63_000_000_000, 1, frames)  # each symbol every 10 ms: 25 trades a slot
    out, process = {}, det.process
    gc.collect()
    gc.disable()
    for name, records in (("history", history), ("slots", slots), ("steady", steady)):
        t0 = time.process_time()
        for i, record in enumerate(records):
            process(record, i, 0, 0)
        out[f"{name}_cpu_ns_per_record"] = round((time.process_time() - t0) / len(records) * 1e9)
    gc.enable()
    return out


class ShardPath:
    """A tick detector fed as a shard feeds it: 1,000-record stream batches, decoded; checkpoints to
    a real store every second if `store`."""

    def __init__(self, store: bool) -> None:
        self.det, self.seq, self.last = TickDetector(TickChannel()), 0, time.monotonic()
        self.folder = tempfile.mkdtemp(prefix="tm-state-")
        self.store = Store(store_path(self.folder, "tick", 0)) if store else None

    def warm(self, first: int, last: int) -> None:
        names = [f"T{i:06d}" for i in range(first, last)]
        for frame in warm_history(names, [], END_NS):
            trades = [r[:5] for r in frame if r[0] == "T"]  # ("T", ticker, price, size, time): a Trade's encoding
            for i in range(0, len(trades), 1_000):
                part = trades[i : i + 1_000]
                # a Batch's encoding, as a router sends it: no Trade made here, so the shard's decoding
                # makes each ticker's only string, as in a shard
                data = msgspec.msgpack.encode(("batch", "tick", 0, 1, self.seq, self.seq, [0] * len(part), part))
                for k, record in enumerate(worker_input_decoder.decode(data).records):
                    self.det.process(record, self.seq + k, 0, 0)
                self.seq += len(part)
                self.checkpoint(time.monotonic() - self.last >= 1.0)
        self.checkpoint(True)
        gc.collect()
        release_memory()

    def checkpoint(self, due: bool) -> None:
        if self.store is None:
            export_changes(self.det)  # (no dirty marks left behind)
        elif due:
            self.store.checkpoint(self.det, [Position(1, self.seq)])
            while self.store.busy:
                list(self.store.finished())
                time.sleep(0.001)
            self.last = time.monotonic()


def through(small: int, large: int, store: bool) -> dict[str, Any]:
    """RSS per symbol of the shard's path (see ShardPath) for symbols 0..small, then small..large."""
    proc, path = psutil.Process(), ShardPath(store)
    idle = proc.memory_info().rss
    path.warm(0, small)
    at_small = proc.memory_info().rss
    path.warm(small, large)
    at_large = proc.memory_info().rss
    if path.store is not None:
        path.store.close()
    shutil.rmtree(path.folder)
    return {
        "through": "store" if store else "batches",
        "symbols": [small, large],
        f"rss_bytes_per_symbol_first_{small}": round((at_small - idle) / small),
        f"rss_bytes_per_symbol_{small}_to_{large}": round((at_large - at_small) / (large - small)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__.splitlines()[0])
    p.add_argument("--symbols", default="8000,40000", help="two symbol counts (default 8000,40000)")
    p.add_argument("--cpu", action="store_true", help="CPU ns per record of the detector instead")
    p.add_argument("--through", choices=("batches", "store"), help="RSS per symbol of the shard's path instead")
    args = p.parse_args(argv)
    steady_heap()  # as a shard's serve() does
    if args.cpu:
        print(json.dumps(cpu(), indent=2))
        return 0
    small, large = (int(x) for x in args.symbols.split(","))
    if not 10 < small < large:
        p.error("--symbols needs two counts, 10 < the first < the second")
    out = through(small, large, args.through == "store") if args.through else measure(small, large)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
