"""What the aggregator and the router read from their socket monitors, as their status reports show it."""

from __future__ import annotations

import os
import signal
from functools import partial

import zmq

from tests.mesh import Mesh, poll_until


def reported(mesh: Mesh, process: str, kind: str, key: str) -> float:
    """A gauge or counter from the newest status of `process` (0 until it reports one)."""
    status = mesh.read_bus().get(process)
    values = {} if status is None else (status.gauges if kind == "gauge" else status.counters)
    return values.get(key, 0)


def test_the_aggregator_counts_subscribers_coming_and_going(mesh: Mesh) -> None:
    subs = []
    for _ in range(2):
        sub = mesh.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(mesh.endpoints.publish)
        subs.append(sub)
        mesh.on_close(partial(sub.close, 0))
    poll_until(lambda: reported(mesh, "aggregator", "gauge", "subscribers") == 2, what="2 subscribers")
    subs[0].close(0)
    poll_until(lambda: reported(mesh, "aggregator", "gauge", "subscribers") == 1, what="1 subscriber left")


def test_the_router_counts_a_shard_that_went_away(mesh: Mesh) -> None:
    assert reported(mesh, "router", "counter", "tick.disconnects") == 0
    os.kill(mesh.pid("worker.tick.0"), signal.SIGKILL)  # its supervisor starts another
    poll_until(lambda: reported(mesh, "router", "counter", "tick.disconnects") >= 1, what="tick.disconnects")
    assert reported(mesh, "router", "counter", "ohlcv.disconnects") == 0
