"""`tickmesh-feed replay PATH…`: push the records of files, as fast as possible or paced in data time."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from feeds.formats import (
    FORMATS,
    FormatError,
    Parsed,
    detect,
    jsonl,
    ohlcv,
    parse_interval,
    polygon_aggs,
    polygon_trades,
)
from feeds.polygon_wire import PolygonDecoder
from feeds.pump import Pacer, Sender, sleep
from feeds.records import RowError
from tickmesh.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from tickmesh.config import Config
from tickmesh.schema import Record, record_time

log = logging.getLogger(__name__)
EXAMPLES_KEPT = 100


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="files to replay, in order (.gz is read too)")
    p.add_argument("--format", choices=FORMATS, help="skip detection: " + ", ".join(FORMATS))
    p.add_argument("--ticker", help="the ticker of a generic OHLCV file without a ticker column")
    p.add_argument("--speed", default="max", help="max (default), or a factor of real time: 1, 60, 0.5")
    p.add_argument(
        "--interval",
        help="bar length: intraday OHLCV (default: inferred), Polygon aggregates "
        "(default 1m, or 1d if the file name says day)",
    )
    p.add_argument("--batch", type=int, default=500, help="records per message (default 500)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )


@dataclass
class Summary:
    """What a replay did: counts, rejection reasons, the first rejected lines."""

    files: int = 0
    read: int = 0
    rejected: int = 0
    sent: int = 0
    duplicates: int = 0
    failed_files: list[str] = field(default_factory=list)
    format_errors: int = 0  # files refused as a whole: their format, a missing column, no ticker
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    flushed: bool = True

    def reject(self, where: str, error: RowError) -> None:
        self.rejected += 1
        text = str(error)
        self.reasons[_reason_key(text)] += 1
        if len(self.examples) < EXAMPLES_KEPT:
            self.examples.append(f"{where}: {text}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "read": self.read,
            "rejected": self.rejected,
            "sent": self.sent,
            "duplicates": self.duplicates,
            "failed_files": self.failed_files,
            "reasons": dict(self.reasons),
            "rejections": self.examples,
            "seconds": round(self.seconds, 3),
            "flushed": self.flushed,
        }

    def text(self) -> str:
        lines = [
            f"replay: {self.files} file(s), {self.read} records read, {self.rejected} rejected, {self.sent} sent"
            f" in {self.seconds:.1f} s" + (f", {self.duplicates} duplicate messages dropped" if self.duplicates else "")
        ]
        lines += [f"  rejected {where}" for where in self.examples[:20]]
        if self.rejected > 20:
            reasons = ", ".join(f"{k} {v}" for k, v in self.reasons.items())
            lines.append(f"  … {self.rejected - 20} more; by reason: {reasons}")
        lines += [f"  failed {f}" for f in self.failed_files]
        if not self.flushed:
            lines.append("  the router did not acknowledge the end of the replay: the last records may be lost")
        return "\n".join(lines)


def _reason_key(text: str) -> str:
    """`message 2 (T): price: Expected …` → `T price`; `date: not a date` → `date`."""
    if text.startswith("message ") and "): " in text:
        ev, _, text = text.partition("(")[2].partition("): ")
        return f"{ev} {text.split(':', 1)[0]}"
    return text.split(":", 1)[0][:60]


def open_binary(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(stream of the content, the raw file whose position measures progress); gzip by magic bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw), raw  # type: ignore[return-value]
    raw.seek(0)
    return raw, raw


def read_file(path: Path, args: argparse.Namespace, decoder: PolygonDecoder) -> tuple[Iterator[Parsed], BinaryIO]:
    """The parsed items of one file and its raw handle (for progress); FormatError if unreadable as such."""
    content, raw = open_binary(path)
    text = io.TextIOWrapper(content, encoding="utf-8-sig", errors="replace", newline="")
    first = text.readline()
    while first and not first.strip():
        first = text.readline()
    text.seek(0)  # GzipFile and files seek back to the start
    fmt = args.format or detect(path.name, first)
    interval = parse_interval(args.interval) if args.interval else None
    if fmt == "jsonl":
        return jsonl(text, decoder), raw
    if fmt == "polygon-trades":
        return polygon_trades(text), raw
    if fmt == "polygon-aggs":
        default = parse_interval("1d" if "day" in path.name.lower() else "1m")
        return polygon_aggs(text, interval or default), raw
    return ohlcv(text, args.ticker, interval), raw


def _usage(args: argparse.Namespace) -> tuple[Pacer | None, str | None]:
    """The pacer `--speed` asks for, and what is wrong with the arguments (None if nothing)."""
    try:
        pacer = None if args.speed == "max" else Pacer(float(args.speed))
    except ValueError:
        return None, f"--speed must be `max` or a positive factor, not {args.speed!r}"
    try:
        if args.interval:
            parse_interval(args.interval)
    except FormatError as exc:
        return None, f"--interval: {exc}"
    return pacer, None


def run(args: argparse.Namespace, config: Config, is_stopped: Callable[[], bool]) -> int:
    """Replay every file; print the summary (also after a usage error); the exit code of the README's table."""
    pacer, problem = _usage(args)
    if problem is not None:
        log.error("replay: %s", problem)
        _report(Summary(), args)
        return EXIT_USAGE
    summary, decoder = Summary(), PolygonDecoder()
    sender = Sender(config, args.batch, is_stopped, name=f"replay-{time.monotonic_ns() % 1_000_000}")
    show = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.json)
    began = time.monotonic()
    try:
        for name in args.paths:
            if is_stopped() or not _replay_file(Path(name), args, decoder, sender, pacer, summary, show, is_stopped):
                break
    finally:
        summary.flushed = sender.finish()
        summary.sent = sender.sent
        summary.duplicates = sum(v for k, v in decoder.counters.items() if k.startswith("duplicates."))
        summary.seconds = time.monotonic() - began
    _report(summary, args)
    if summary.format_errors:
        return EXIT_USAGE
    return EXIT_OK if summary.flushed and not summary.failed_files else EXIT_FAILURE


def _report(summary: Summary, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(summary.as_dict()), flush=True)
    else:
        print(summary.text(), file=sys.stderr)


def _replay_file(
    path: Path,
    args: argparse.Namespace,
    decoder: PolygonDecoder,
    sender: Sender,
    pacer: Pacer | None,
    summary: Summary,
    show: bool,
    is_stopped: Callable[[], bool],
) -> bool:
    """Send one file's records; False if stopped (or the router stopped taking them)."""
    try:
        items, raw = read_file(path, args, decoder)
    except FormatError as exc:
        summary.failed_files.append(f"{path}:{exc.line}: {exc}")
        summary.format_errors += 1
        log.error("replay: %s:%d: %s", path, exc.line, exc)
        return True
    except (OSError, EOFError) as exc:
        summary.failed_files.append(f"{path}: {exc}")
        log.error("replay: %s: %s", path, exc)
        return True
    summary.files += 1
    progress = _Progress(path, raw) if show else None
    batch: list[Record] = []
    line = 0
    try:
        for line, item in items:
            if isinstance(item, RowError):
                summary.reject(f"{path.name}:{line}", item)
                continue
            summary.read += 1
            if pacer is not None and (wait := pacer.delay(record_time(item))) > 0:
                if not sender.send(batch) or not sleep(wait, is_stopped):
                    return False
                batch = []
            batch.append(item)
            if len(batch) >= sender.batch:
                if not sender.send(batch) or is_stopped():
                    return False
                batch = []
                if progress is not None:
                    progress.update()
        return sender.send(batch)
    except (OSError, EOFError, UnicodeError) as exc:  # a truncated .gz, a disk error
        summary.failed_files.append(f"{path}: read error after line {line}: {exc}")
        log.error("replay: %s: read error after line %d: %s", path, line, exc)
        return sender.send(batch)
    finally:
        raw.close()
        if progress is not None:
            progress.close()


class _Progress:
    """A rich progress bar over the bytes of the raw (possibly compressed) file."""

    def __init__(self, path: Path, raw: BinaryIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        self.raw = raw
        self.bar = Progress(
            "[bold]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.bar.add_task(path.name, total=path.stat().st_size)
        self.bar.start()

    def update(self) -> None:
        self.bar.update(self.task, completed=self.raw.tell())

    def close(self) -> None:
        self.bar.stop()
