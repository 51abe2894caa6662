"""A clean stop stays clean however many stop signals come.

honcho, systemd and orchestrators may signal a process more than once while it stops. Late in
Python's shutdown (and when an asyncio loop closes) a handled signal gets its default action back,
so one more SIGTERM there ended a clean stop with -15. Every kind of process is tested: the mesh
processes (StopFlag), a worker supervisor, the subscriber CLI, the journal, and the asyncio ones
(control, web).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc
from tests.integration.test_mesh import scripted
from tests.mesh import Mesh, free_port, poll_until

TOKEN = "stop-signals-token-0123456789abcdef"
pytestmark = pytest.mark.slow  # ~8 s: a whole mesh with control, the journal, web and a subscriber


def barrage(proc: subprocess.Popen[bytes], every_s: float = 0.0005, limit_s: float = 15.0) -> None:
    """SIGTERM `proc` again and again until it exits (a stop that hangs is killed after `limit_s`)."""
    deadline = time.monotonic() + limit_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(every_s)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_every_process_stops_with_0_under_a_barrage_of_sigterms(mesh_factory: Callable[..., Mesh]) -> None:
    mesh = mesh_factory()
    mesh.env["TICKMESH_ADMIN_TOKEN"] = TOKEN
    mesh.spawn("control", "-m", "control")
    mesh.start(with_bus=False)
    mesh.spawn("journal", "-m", "journal")
    port = free_port()
    mesh.spawn("web", "-m", "web", "--listen", f"127.0.0.1:{port}")
    mesh.spawn("subscriber", "-m", "subscriber")
    channel = grpc.insecure_channel(mesh.endpoints.grpc)
    mesh.on_close(channel.close)
    stub = pb_grpc.ControlStub(channel)
    wanted = {"router", "aggregator", "journal", *(f"supervisor.{c}" for c in ("tick", "ohlcv", "fmv"))}

    def reporting() -> bool:
        try:
            live = stub.GetMetrics(pb.GetMetricsRequest(), metadata=[("authorization", f"Bearer {TOKEN}")])
        except grpc.RpcError:
            return False
        return wanted <= {p.process for p in live.processes if p.live}

    poll_until(reporting, 20, what="every process reporting to control")
    poll_until(lambda: "web: http://" in mesh.log("web"), 15, what="tickmesh-web listening")
    mesh.push(scripted(time.time_ns()))
    poll_until(lambda: "AAPL" in mesh.log("subscriber"), 15, what="the subscriber printing events")

    threads = [threading.Thread(target=barrage, args=(proc,)) for proc in mesh.procs.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = {name: proc.returncode for name, proc in mesh.procs.items()}
    assert codes == dict.fromkeys(mesh.procs, 0), codes
    for name in mesh.procs:
        assert "Traceback" not in mesh.log(name), (name, mesh.log(name)[-3000:])
