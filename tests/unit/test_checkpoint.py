"""Checkpoints round-trip and are replaced atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickmesh.schema import High
from workers import checkpoint


def test_round_trip_and_missing(tmp_path: Path) -> None:
    path = checkpoint.checkpoint_path(str(tmp_path / "state"), "tick", 1)
    assert checkpoint.load(path) is None
    event = High(
        id="tick:high:A:1",
        ticker="A",
        source="tick",
        priority=1,
        time=1,
        price=2.0,
        record_seq=7,
        ingest_ns=1,
        detected_ns=2,
        previous=1.0,
        count=1,
    )
    saved = checkpoint.Checkpoint("tick", 1, 99, 7, b"state", [event])
    checkpoint.save(path, saved)
    assert checkpoint.load(path) == saved
    checkpoint.save(path, checkpoint.Checkpoint("tick", 1, 99, 8, b"newer", []))
    loaded = checkpoint.load(path)
    assert loaded is not None and loaded.seq == 8
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "tick-0.ckpt"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        checkpoint.load(path)
