"""`tickmesh-events query --parquet FILE`: the rows as one Parquet file (pyarrow, the optional `parquet` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from journal.store import StoredEvent

INSTALL = "pip install 'tickmesh[parquet]'"
# The envelope's columns, typed (the kinds' own fields are inferred: a column is null where a kind lacks it).
INTS = ("priority", "record_seq", "ingest_ns", "detected_ns", "seq", "epoch", "published_ns")
STRINGS = ("id", "kind", "ticker", "source", "run")


class ParquetUnavailable(RuntimeError):
    """pyarrow is not installed: the message names the extra that brings it."""


def write_parquet(rows: Sequence[StoredEvent], path: str) -> int:
    """Write `rows` (the fields --json prints; `time` as a UTC timestamp in ns) to `path`; rows written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetUnavailable(f"--parquet needs pyarrow, which is not installed: {INSTALL}") from None
    dicts = [row.as_dict() for row in rows]
    names = list(dict.fromkeys(["id", "time", "kind", "ticker", "source", "price", *(k for d in dicts for k in d)]))
    arrays = [pa.array([d.get(name) for d in dicts], type=_type(pa, name)) for name in names]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path)
    return len(dicts)


def _type(pa: Any, name: str) -> Any:
    if name == "time":
        return pa.timestamp("ns", tz="UTC")
    if name == "price":
        return pa.float64()
    if name in INTS:
        return pa.int64()
    if name in STRINGS:
        return pa.string()
    return None  # inferred from the values
