"""Control's durable live configuration: the versioned channel and aggregator settings it publishes.

The live config comes only from gRPC changes (with the token) and from this
store, never from what a process reports. It is written (atomically, fsync'd)
on every change to `state.dir/control-config.msgpack`, with a digest of the
config the file gave at the time. At start:

- no store: the file's config is version 0 (or higher, see below);
- a store made from the same file config: continue from it, its version and all;
- the file was edited since (its digest differs): the file wins, as a new version
  above the stored one, and one log line says so — an operator who edits
  tickmesh.toml and restarts expects what they wrote;
- an unreadable store is moved aside (counted, logged) and the file's config used.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import msgspec

from tickmesh.config import CHANNELS, AggregatorConfig, Channels, Config
from tickmesh.durable import move_aside, write_atomic

log = logging.getLogger(__name__)
FILE = "control-config.msgpack"


class Stored(msgspec.Struct, frozen=True):
    """One stored live config."""

    version: int
    channel_versions: dict[str, int]
    file_digest: str  # of the file config this live config was built on
    channels: Channels
    aggregator: AggregatorConfig


_decoder = msgspec.msgpack.Decoder(Stored)


def digest(config: Config) -> str:
    """What identifies the live-changeable part of a file config."""
    return hashlib.sha256(msgspec.msgpack.encode((config.channels, config.aggregator))).hexdigest()


class ConfigStore:
    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / FILE
        self.moved_aside = 0

    def load(self, file_config: Config) -> tuple[Config, int, dict[str, int]]:
        """(config, version, per-channel versions) to start from, per the rules above."""
        fresh = (file_config, 0, dict.fromkeys(CHANNELS, 0))
        try:
            stored = _decoder.decode(self.path.read_bytes())
        except FileNotFoundError:
            return fresh
        except (OSError, msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
            self.moved_aside += 1
            log.error("live config %s unreadable (%s); moved aside to %s", self.path, exc, move_aside(self.path))
            return fresh
        live = msgspec.structs.replace(file_config, channels=stored.channels, aggregator=stored.aggregator)
        if stored.file_digest == digest(file_config):
            log.info("continuing from the stored live config, version %d", stored.version)
            return live, stored.version, {**fresh[2], **stored.channel_versions}
        version = stored.version + 1
        changed = {ch: version for ch in CHANNELS if file_config.channel(ch) != live.channel(ch)}
        log.warning(
            "the config file changed since live config version %d was stored: the file wins, as version %d",
            stored.version,
            version,
        )
        versions = {**fresh[2], **stored.channel_versions, **changed}
        self.save(file_config, version, versions, file_config)
        return file_config, version, versions

    def save(self, config: Config, version: int, channel_versions: dict[str, int], file_config: Config) -> None:
        stored = Stored(version, channel_versions, digest(file_config), config.channels, config.aggregator)
        write_atomic(self.path, msgspec.msgpack.encode(stored))
