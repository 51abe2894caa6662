"""The dead-letter log: rejected and failed records, with reason and source, in a bounded file."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tickmesh.security import private_dirs

log = logging.getLogger(__name__)

SAMPLE_BYTES = 512  # of a rejected payload, hex-encoded


class DeadLetters:
    """Appends one JSON object per line to `<folder>/<process>.jsonl`.

    When the file passes `max_bytes` it becomes `<process>.jsonl.1` (replacing
    the previous one), so the log never holds more than about twice that.
    """

    def __init__(self, folder: str, process: str, max_bytes: int) -> None:
        self.path = Path(folder) / f"{process}.jsonl"
        self.process, self.max_bytes = process, max_bytes
        self.written = 0
        try:
            private_dirs(self.path.parent)
            self.size = self.path.stat().st_size if self.path.exists() else 0
        except OSError as exc:
            log.error("dead letters cannot be written to %s: %s", self.path, exc)
            self.size = -1

    def add(self, reason: str, source: str, detail: str, payload: bytes | str = b"") -> None:
        if self.size < 0:
            return
        sample = payload[:SAMPLE_BYTES].hex() if isinstance(payload, bytes) else payload[:SAMPLE_BYTES]
        line = (
            json.dumps(
                {
                    "time_ns": time.time_ns(),
                    "process": self.process,
                    "reason": reason,
                    "source": source,
                    "detail": detail[:1_000],
                    "payload": sample,
                }
            )
            + "\n"
        )
        try:
            if self.size + len(line) > self.max_bytes and self.size > 0:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                self.size = 0
            with self.path.open("a") as f:
                f.write(line)
            self.size += len(line)
            self.written += 1
        except OSError as exc:
            log.error("dead letter not written to %s: %s", self.path, exc)
