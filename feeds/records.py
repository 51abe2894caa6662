"""Strict construction of records from untrusted values, and time units normalised to nanoseconds."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from tickmesh.schema import Bar, FairMarketValue, Record, Trade

_TAGS: dict[type, str] = {Trade: "T", Bar: "B", FairMarketValue: "F"}
_AT = re.compile(r"\s*-\s*at `\$\[(\d+)\]((?:\[\d+\])*)`")


class RowError(ValueError):
    """A row, line or message cannot become a record; the message says why (never the whole row)."""


def make(kind: type[Record], *values: Any) -> Record:
    """A record validated exactly as the router will decode it (Meta constraints, bar consistency)."""
    try:
        return msgspec.convert([_TAGS[kind], *values], kind)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise RowError(_with_field_name(kind, str(exc))) from None


def _with_field_name(kind: type, message: str) -> str:
    """`Expected float > 0.0 - at $[2]` → `price: Expected float > 0.0`."""
    match = _AT.search(message)
    if not match:
        return message
    fields = kind.__struct_fields__  # type: ignore[attr-defined]
    index = int(match.group(1)) - 1  # element 0 is the tag
    name = fields[index] if 0 <= index < len(fields) else f"field {index}"
    return f"{name}{match.group(2)}: {message[: match.start()]}"


def to_ns(value: Any, what: str = "timestamp") -> int:
    """An epoch timestamp in s, ms, µs or ns (told apart by magnitude) as integer nanoseconds.

    Present-day values differ by factors of 1000 (s ≈ 1.7e9, ms ≈ 1.7e12, µs ≈ 1.7e15,
    ns ≈ 1.7e18), so thresholds at 1e11, 1e14 and 1e17 are unambiguous for 1973..5138.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise RowError(f"{what}: not a number: {value[:40]!r}") from None
        else:
            raise RowError(f"{what}: expected a number, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")) or value <= 0:
        raise RowError(f"{what}: not a valid time: {value!r}")
    magnitude = abs(value)
    scale = 1_000_000_000 if magnitude < 1e11 else 1_000_000 if magnitude < 1e14 else 1_000 if magnitude < 1e17 else 1
    return int(value) * scale if isinstance(value, int) else int(round(value * scale))


def number(text: str, what: str) -> float:
    """A float from a CSV cell; the schema then rejects NaN, infinities and out-of-range values."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise RowError(f"{what}: not a number: {str(text)[:40]!r}") from None


def integer(text: str, what: str) -> int:
    """An int from a CSV cell (`12` or `12.0`)."""
    try:
        return int(text)
    except (TypeError, ValueError):
        value = number(text, what)
        if not value.is_integer():
            raise RowError(f"{what}: not an integer: {text[:40]!r}") from None
        return int(value)
