"""Measure what a browser that stops reading costs the mesh: tick latency with and without a stalled websocket."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from tests.integration.conftest import FAST  # noqa: E402
from tests.mesh import Mesh, free_port, poll_until  # noqa: E402

PHASE_S = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def read_forever(url: str, stop: threading.Event, counts: dict[str, int]) -> None:
    """A browser that keeps up."""
    with connect(url, ping_interval=None) as ws, contextlib.suppress(ConnectionClosed):  # closed at the end
        while not stop.is_set():
            message = json.loads(ws.recv())
            counts[message["type"]] = counts.get(message["type"], 0) + 1


def measure(mesh: Mesh, seconds: float) -> tuple[int, float, float]:
    """Tick events seen and their ingest→publish latency p50/p99 in ms, over `seconds`."""
    sub = mesh.subscriber()
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        publication = sub.recv(timeout_ms=100)
        if publication is not None and publication.event.source == "tick":
            latencies.append((publication.published_ns - publication.event.ingest_ns) / 1e6)
    sub.close()
    return len(latencies), percentile(latencies, 0.5), percentile(latencies, 0.99)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the mesh is stopped on the way out
    mesh = Mesh({**FAST, "web": {"queue": 200, "poll_s": 1.0}})
    mesh.env["TICKMESH_ADMIN_TOKEN"] = "stall-measure-token-0123456789"
    try:
        mesh.spawn("control", "-m", "control")
        mesh.start(with_bus=False)
        port = free_port()
        mesh.spawn("web", "-m", "web", "--listen", f"127.0.0.1:{port}")
        poll_until(lambda: "web: http" in mesh.log("web"), 15)
        mesh.spawn("feed", "-m", "feeds", "sim", "--rate", "8000", "--tick-symbols", "200")
        stop, counts = threading.Event(), dict[str, int]()
        threading.Thread(target=read_forever, args=(f"ws://127.0.0.1:{port}/stream", stop, counts), daemon=True).start()
        time.sleep(5)  # warm-up
        print("measuring", flush=True)
        rows = [("one browser reading", *measure(mesh, PHASE_S))]
        print(rows[-1], flush=True)
        # A browser that reads one frame, then stalls (no pings of its own: it would time them out itself).
        with connect(f"ws://127.0.0.1:{port}/stream", max_queue=1, ping_interval=None) as stalled:
            rows.append(("plus one browser not reading", *measure(mesh, PHASE_S)))
            print(rows[-1], flush=True)
            stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats").read())
            dropped = max(c["dropped"] for c in stats["connections"])
            markers = 0
            while markers < dropped:  # it reads again: what was dropped is reported
                message = json.loads(stalled.recv(timeout=30))
                markers += message["count"] if message["type"] == "dropped" else 0
        rows.append(("after it resumed", *measure(mesh, PHASE_S)))
        stop.set()
        print("| phase | tick events | p50 ms | p99 ms |\n|---|---|---|---|")
        for name, n, p50, p99 in rows:
            print(f"| {name} | {n:,} | {p50:.2f} | {p99:.2f} |")
        print(f"web /api/stats while stalled: {stats['connections']}")
        print(f"the stalled browser's markers on resuming: {markers:,} events dropped")
    finally:
        mesh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
