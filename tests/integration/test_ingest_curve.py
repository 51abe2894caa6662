"""security.ingest = "curve": on loopback, with CURVE otherwise off, only listed producers can push records."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

from tests.mesh import Mesh, collect, free_port, poll_until
from tickmesh import keys
from tickmesh.config import load_config
from tickmesh.curve import secure_context
from tickmesh.producer import FlushTimeout, Producer
from tickmesh.schema import Trade

S = 1_000_000_000


def test_only_producers_with_a_listed_key_reach_the_router(mesh_factory: Callable[..., Mesh], tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    keys.create(folder, ["router", "feed"])
    public = {"ingest": f"tcp://127.0.0.1:{free_port()}", "sync": f"tcp://127.0.0.1:{free_port()}"}
    mesh = mesh_factory({"endpoints": public, "security": {"ingest": "curve", "keys_dir": str(folder)}}).start()
    config = load_config(str(mesh.config_path), env={})
    sub = mesh.subscriber()
    now = time.time_ns()

    listed_ctx = secure_context(config, "feed")
    listed = Producer(listed_ctx, mesh.endpoints, name="listed")
    listed.send([Trade("KEYED", 10.0 + i, 1, now + i * 2 * S) for i in range(3)])
    listed.flush()
    assert [p.event.price for p in collect(sub, lambda got: len(got) >= 2)] == [11.0, 12.0]

    plain_ctx = zmq.Context()  # no key at all: a local process that is not a listed producer
    stranger = Producer(plain_ctx, mesh.endpoints, name="stranger")
    stranger.send([Trade("STRANGE", 10.0 + i, 1, now + i * 2 * S) for i in range(3)])
    with pytest.raises(FlushTimeout):
        stranger.flush(timeout_s=2)

    def refused() -> int:
        router = mesh.read_bus().get("router")
        return sum(
            v for k, v in (router.counters if router else {}).items() if k.startswith("security.handshake_failed")
        )

    poll_until(refused, 10, what="the stranger's handshake counted as failed")
    assert mesh.counters().get("tick.received") == 3  # the listed producer's three trades, nothing else
    for producer, ctx in ((listed, listed_ctx), (stranger, plain_ctx)):
        producer.close()
        ctx.destroy(linger=0)
