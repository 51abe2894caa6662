"""The README shows what the code does: the Procfile it runs and the metrics table's current header."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from control import tables
from control.v1 import control_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_shows_the_procfile_as_it_is() -> None:
    assert f"```\n{(ROOT / 'Procfile').read_text()}```" in (ROOT / "README.md").read_text()


def column_names(lines: list[str]) -> list[str]:
    """The names of the first rich table's columns in `lines` (the rows between ┏ and ┡, joined)."""
    lines = [line.strip() for line in lines]
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    end = next(i for i, line in enumerate(lines) if i > top and line.startswith("┡"))
    rows = [[c.strip() for c in line.strip("┃").split("┃")] for line in lines[top + 1 : end]]
    return [" ".join(filter(None, parts)) for parts in zip(*rows, strict=True)]


def test_the_metrics_header_in_the_readme_and_docs_is_what_tickmesh_admin_prints() -> None:
    snap = pb.MetricsSnapshot(channels=[pb.ChannelMetrics(channel="tick", received=47_105)])
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(tables.metrics_view(snap))
    printed = column_names(console.export_text().splitlines())
    assert printed[:3] == ["channel", "received", "processed"] and printed[-1] == "e2e ms p50/p99"
    for doc in ("README.md", "docs/control.md"):
        text = (ROOT / doc).read_text()
        shown = text[text.index("$ tickmesh-admin metrics") :].splitlines()
        assert column_names(shown) == printed, doc
