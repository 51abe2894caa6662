"""Worker checkpoints: detector state and not-yet-confirmed events, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from tickmesh.schema import Event
from tickmesh.security import private_dirs


class Checkpoint(msgspec.Struct, frozen=True):
    """A shard's state after processing its stream up to `seq` of `epoch`.

    `events` are the events of records the router may still resend (at or after
    its `retained_from`): they may not have reached the aggregator before a
    crash, so a restarted worker sends them again (dedup drops the copies).
    """

    channel: str
    shard: int
    epoch: int
    seq: int
    detector: bytes
    events: list[Event]


_decoder = msgspec.msgpack.Decoder(Checkpoint)
_encoder = msgspec.msgpack.Encoder()


def checkpoint_path(folder: str, channel: str, shard: int) -> Path:
    return Path(folder) / f"{channel}-{shard}.ckpt"


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write to a temporary file and rename it over the old one: a crash leaves one whole checkpoint."""
    private_dirs(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(_encoder.encode(checkpoint))
    os.replace(tmp, path)


def load(path: Path) -> Checkpoint | None:
    """The checkpoint at `path`, or None if there is none; raises ValueError if it is unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"unreadable checkpoint {path}: {exc}") from None
