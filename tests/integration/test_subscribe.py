"""`tickmesh-subscribe` at a whole-mesh stop: it prints what the aggregator still publishes after the
subscriber's own signal, up to the aggregator's final heartbeat (as `honcho start` stops everything at once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.test_reliability import QUIET, Recorder, _highs
from tests.mesh import ROOT, Mesh, poll_until


def printed(out: Path) -> list[int]:
    text = out.read_text()
    return [json.loads(line)["seq"] for line in text[: text.rfind("\n") + 1].splitlines()]


def test_a_whole_mesh_stop_prints_what_the_aggregator_publishes_after_the_subscribers_own_signal(
    mesh_factory, tmp_path: Path
) -> None:
    mesh: Mesh = mesh_factory(QUIET).start()
    recorder = Recorder(mesh)
    records = _highs(40, 50)  # 1,960 highs
    mesh.push(records[:100])
    poll_until(lambda: recorder.holds(60), 10, what="the first 60 highs")
    out = tmp_path / "subscribe.jsonl"
    with open(out, "wb") as stdout, open(tmp_path / "subscribe.err", "wb") as stderr:
        cli = subprocess.Popen([sys.executable, "-m", "subscriber", "--config", str(mesh.config_path), "--json",
                                "--last", "60"], stdout=stdout, stderr=stderr,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    try:
        poll_until(lambda: len(printed(out)) >= 60, 20, what="the subscriber's first 60 lines")
        with mesh.push_paced(records[100:]):  # 100 every 0.1 s
            poll_until(lambda: recorder.holds(300), 20, what="events flowing")
            signalled_ns = time.time_ns()
            cli.send_signal(signal.SIGTERM)
            mesh.procs["aggregator"].send_signal(signal.SIGTERM)
            published_after = lambda: sum(p.published_ns > signalled_ns for p in recorder.received)  # noqa: E731
            poll_until(lambda: published_after() >= 100, 10, what="100 published after the subscriber's signal")
        mesh.stop_the_rest()
        assert mesh.procs["aggregator"].wait(10) == 0 and cli.wait(10) == 0
        recorder.wait_for_publisher_gone()
    finally:
        cli.kill()
        cli.wait()
    seqs = [p.seq for p in recorder.received]
    assert printed(out) == seqs[seqs.index(printed(out)[0]) :], "the subscriber's lines are not the published tail"
    assert printed(out)[-1] == seqs[-1] and published_after() >= 100
    assert "stopping before" not in (tmp_path / "subscribe.err").read_text()
