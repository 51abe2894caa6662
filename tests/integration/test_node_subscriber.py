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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_reliability import QUIET, _highs, market, settled
from tests.mesh import ROOT, Mesh, poll_until

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
