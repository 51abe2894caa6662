"""examples/node/subscriber.js, written from docs/wire.md, prints what `tickmesh-subscribe --json` prints.

It runs against a real mesh fed a deterministic market; both subscribers start after part of the
stream was published (the Node one fetches it with a `since` request, the Python one with `--last`),
then the rest arrives live (or, if a subscriber's connection came late, through its gap filling).
Their outputs are compared field by field: nanosecond times above 2**53 included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from subscriber.client import Subscriber
from tests.integration.test_reliability import QUIET, _highs, market, settled
from tests.mesh import ROOT, Mesh, collect, poll_until

EXAMPLE = ROOT / "examples" / "node"


@pytest.fixture(scope="module")
def node_example() -> Path:
    """examples/node with its npm dependencies (installed here when .ci/run has not)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (.ci/run installs them)")
    if not (EXAMPLE / "node_modules" / "zeromq").is_dir():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}{done.stderr}"
    return EXAMPLE


class Printer:
    """A subscriber process whose stdout (one JSON object per line) goes to a file."""

    def __init__(self, argv: list[str], out: Path, cwd: Path) -> None:
        self.name, self.out, self.err = out.stem, out, out.with_suffix(".err")
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with open(self.out, "wb") as stdout, open(self.err, "wb") as stderr:
            self.proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, cwd=cwd, env=env)

    def lines(self) -> list[dict[str, Any]]:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.err.read_text()}")
        text = self.out.read_text()
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    def has(self, n: int) -> Callable[[], bool]:
        return lambda: len(self.lines()) >= n

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def printers() -> Iterator[list[Printer]]:
    started: list[Printer] = []
    yield started
    for printer in started:
        printer.stop()


def test_the_node_subscriber_prints_what_the_python_subscriber_prints(
    mesh_factory, node_example: Path, printers: list[Printer], tmp_path: Path
) -> None:
    mesh: Mesh = mesh_factory(QUIET).start()
    records = market(21, seconds=40, tick=20, ohlcv=30, fmv=5, rate=1_000)
    half = len(records) // 2
    mesh.push(records[:half])
    before = settled(mesh)
    assert before > 0
    ep = mesh.endpoints
    python = Printer([sys.executable, "-m", "subscriber", "--config", str(mesh.config_path), "--json",
                      "--last", str(before)], tmp_path / "python.jsonl", tmp_path)  # fmt: skip
    node = Printer(["node", "subscriber.js", "--publish", ep.publish, "--replay", ep.replay, "--since", "0"],
                   tmp_path / "node.jsonl", node_example)  # fmt: skip
    printers += [python, node]
    for printer in printers:
        poll_until(printer.has(before), 20, what=f"the first {before} events from {printer.name}")
    mesh.push(records[half:])
    total = settled(mesh)
    assert total > before
    for printer in printers:
        poll_until(printer.has(total), 20, what=f"{total} events from {printer.name}")
    from_python, from_node = python.lines(), node.lines()
    assert len(from_python) == len(from_node) == total
    assert [e["seq"] for e in from_node] == list(range(1, total + 1))
    assert {e["kind"] for e in from_node} >= {"high", "low", "big_move"}
    for mine, theirs in zip(from_node, from_python, strict=True):
        assert mine.keys() == theirs.keys(), (mine, theirs)
        for key, value in theirs.items():
            assert mine[key] == value, (key, mine, theirs)
    assert max(e["time"] for e in from_node) > 2**53  # nanosecond times came through exactly

    # The aggregator restarts: both read its new epoch from its first event, and count nothing lost
    assert mesh.stop("aggregator") == 0
    mesh.spawn("aggregator.2", "-m", "aggregator")
    mesh.push(_highs(10, 3, prefix="E"))  # 20 highs in the new epoch
    for printer in printers:
        poll_until(printer.has(total + 20), 30, what=f"the new epoch's 20 events from {printer.name}")
    for printer in printers:
        after = printer.lines()[total:]
        assert [(e["seq"], e["ticker"][0]) for e in after] == [(seq, "E") for seq in range(1, 21)], printer.name
        assert len({e["epoch"] for e in after}) == 1 and after[0]["epoch"] > from_node[-1]["epoch"]
    node.stop()
    assert "lost" not in node.err.read_text() or ", 0 lost" in node.err.read_text()


class Outage:
    """A forwarder between the aggregator's PUB and the subscribers: while `up` is clear, what the
    aggregator publishes is dropped, as over a network link that is down."""

    def __init__(self, ctx: zmq.Context, publish: str) -> None:  # type: ignore[type-arg]
        self.up, self.done = threading.Event(), threading.Event()
        self.pub = ctx.socket(zmq.PUB)
        self.pub.bind("tcp://127.0.0.1:*")
        self.endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.up.set()
        self.thread = threading.Thread(target=self._forward, args=(ctx, publish), daemon=True)
        self.thread.start()

    def _forward(self, ctx: zmq.Context, publish: str) -> None:  # type: ignore[type-arg]
        with ctx.socket(zmq.SUB) as sub:
            sub.connect(publish)
            sub.subscribe(b"")
            while not self.done.is_set():
                if sub.poll(50):
                    frames = sub.recv_multipart()
                    if self.up.is_set():
                        self.pub.send_multipart(frames)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.pub.close(0)


def test_both_subscribers_count_a_whole_epoch_that_ran_while_they_were_away(
    mesh_factory, node_example: Path, printers: list[Printer], tmp_path: Path
) -> None:
    """Away (the link down) from the end of epoch A, through all of epoch B, back in epoch C: the new
    ring says the epoch before C was B and ended at 20, so both subscribers count B's 20 as lost."""
    mesh: Mesh = mesh_factory(QUIET).start()
    ep = mesh.endpoints
    outage, opened = Outage(mesh.ctx, ep.publish), []
    try:
        mesh.push(_highs(10, 6, prefix="A"))  # 50 highs in epoch A
        assert settled(mesh) == 50
        python = Subscriber(outage.endpoint, replay=ep.replay, last=50, ctx=mesh.ctx)
        opened.append(python.sub)
        node = Printer(["node", "subscriber.js", "--publish", outage.endpoint, "--replay", ep.replay, "--since", "0"],
                       tmp_path / "node.jsonl", node_example)  # fmt: skip
        printers.append(node)
        assert len(collect(python, lambda r: len(r) >= 50)) == 50
        poll_until(node.has(50), 20, what="epoch A's 50 events from node")
        outage.up.clear()
        assert mesh.stop("aggregator") == 0  # epoch A ends at 50, recorded
        mesh.spawn("aggregator.2", "-m", "aggregator")
        mesh.push(_highs(10, 3, prefix="B"))  # 20 in epoch B, none of them received
        held = poll_until(lambda: r if (r := mesh.ring()) and len(r.publications) == 20 else None, 10, what="B's 20")
        epoch_b = held.epoch
        assert mesh.stop("aggregator.2") == 0
        assert mesh.recorded_end(epoch_b) == 20
        mesh.spawn("aggregator.3", "-m", "aggregator")
        outage.up.set()
        mesh.push(_highs(10, 2, prefix="C"))  # 10 in epoch C
        received = collect(python, lambda r: len(r) >= 10, timeout=20)
        assert [(p.seq, p.event.ticker[0]) for p in received] == [(seq, "C") for seq in range(1, 11)]
        assert python.lost == 20
        poll_until(node.has(60), 20, what="epoch C's 10 events from node")
        assert [e["ticker"][0] for e in node.lines()[50:]] == ["C"] * 10
        node.stop()
        err = node.err.read_text()
        assert f"epoch {epoch_b} ran and ended while we were away: its 20 events" in err
        assert ", 20 lost" in err, err
    finally:
        for sock in opened:
            sock.close(0)
        outage.close()


def test_an_epoch_that_published_nothing_is_no_gap_for_either_subscriber(
    mesh_factory, node_example: Path, printers: list[Printer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Epoch A publishes 10; B, which both subscribers hear (its heartbeats), publishes nothing and stops; C
    publishes 10. B's end is recorded as seq 0 at its start, so neither subscriber counts or warns of a gap
    (before, the ring told only the newest epoch that published, A, and both said B's end was not recorded)."""
    mesh: Mesh = mesh_factory(QUIET).start()
    ep = mesh.endpoints
    python = Subscriber(ep.publish, replay=ep.replay, ctx=mesh.ctx)
    mesh.on_close(lambda: python.sub.close(0))
    node = Printer(["node", "subscriber.js", "--publish", ep.publish, "--replay", ep.replay, "--since", "0"],
                   tmp_path / "node.jsonl", node_example)  # fmt: skip
    printers.append(node)
    epoch_a = poll_until(lambda: mesh.ring(), 10, what="epoch A's ring").epoch
    mesh.push(_highs(10, 2, prefix="A"))  # 10 in epoch A
    assert len(collect(python, lambda r: len(r) >= 10)) == 10
    poll_until(node.has(10), 20, what="epoch A's 10 events from node")
    assert mesh.stop("aggregator") == 0
    mesh.spawn("aggregator.2", "-m", "aggregator")
    epoch_b = poll_until(lambda: r if (r := mesh.ring()) and r.epoch != epoch_a else None, 10, what="epoch B").epoch
    collect(python, lambda _: python.epoch == epoch_b and python.old_run is None, timeout=10)  # B heard, A settled
    poll_until(lambda: f"publisher restarted (epoch {epoch_b})" in node.err.read_text(), 10, what="node hearing B")
    assert mesh.stop("aggregator.2") == 0
    assert mesh.recorded_end(epoch_a) == 10
    mesh.spawn("aggregator.3", "-m", "aggregator")
    mesh.push(_highs(10, 2, prefix="C"))  # 10 in epoch C
    received = collect(python, lambda r: len(r) >= 10, timeout=20)
    assert [(p.seq, p.event.ticker[0]) for p in received] == [(seq, "C") for seq in range(1, 11)]
    assert python.lost == 0 and "not recorded" not in caplog.text, caplog.text  # (C's first may come by the ring)
    poll_until(node.has(20), 20, what="epoch C's 10 events from node")
    node.stop()
    err = node.err.read_text()
    assert "not recorded" not in err and ("lost" not in err or " 0 lost" in err), err
