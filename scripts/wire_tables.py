"""Regenerate the field tables of docs/wire.md from the msgspec structs: `python scripts/wire_tables.py [--check]`."""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import msgspec.inspect as mi

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere: the schema of this tree

from tickmesh import schema  # noqa: E402

WIRE = ROOT / "docs" / "wire.md"
BLOCK = re.compile(r"(<!-- BEGIN GENERATED ([\w-]+)[^>]*-->\n).*?(<!-- END GENERATED \2 -->)", re.S)
# Integers that hold nanoseconds since the Unix epoch (or the aggregator's start time, `epoch`):
# above 2**53, so a JavaScript client must decode them as BigInt.
NS_FIELDS = {
    "time",
    "timestamp",
    "start",
    "end",
    "ingest_ns",
    "detected_ns",
    "published_ns",
    "time_ns",
    "epoch",
    "previous_epoch",
}
TUPLES = {"ended": ("epoch", "seq")}  # the items of a field's fixed-length arrays, by name
TABLES: dict[str, tuple[str, list[type[msgspec.Struct]]]] = {
    "records": ("array", [schema.Trade, schema.Bar, schema.FairMarketValue, schema.Mark]),
    "published": ("map", [schema.Publication, schema.Heartbeat]),
    "envelope": ("map", [schema.EventBase]),
    "kinds": (
        "kinds",
        [schema.High, schema.Low, schema.Trend, schema.Surge, schema.BigMove, schema.VolumeSurge, schema.FmvDeviation],
    ),  # fmt: skip
    "replay": ("map", [schema.ReplayRequest, schema.ReplayReply[schema.Publication]]),  # type: ignore[list-item]
}


def describe(t: mi.Type, field: str = "") -> str:
    """A msgspec type as a reader in another language needs it: msgpack type and constraints."""
    if isinstance(t, mi.UnionType):
        parts = [describe(x, field) for x in t.types if not isinstance(x, mi.NoneType)]
        return " or ".join(parts) + (" or nil" if t.includes_none else "")
    if isinstance(t, mi.IntType):
        if (t.ge or 0) > 2**53 and t.lt:  # a checked timestamp: show its range as dates
            return f"int64 ns, {_day(t.ge)} ≤ t < {_day(t.lt)}"
        return "int64 ns" if field in NS_FIELDS else "int" + _bounds(t)
    if isinstance(t, mi.FloatType):
        finite = (t.ge, t.le) == (-1e300, 1e300)  # tickmesh.schema.Real: the bounds only rule out NaN and ±inf
        return "float (finite)" if finite else "float" + _bounds(t)
    if isinstance(t, mi.Metadata):  # a constraint checked outside msgspec (tickmesh.schema.Ticker)
        shown = describe(t.type, field)
        pattern = (t.extra or {}).get("pattern")
        return f"{shown} `{pattern}`" if pattern else shown
    if isinstance(t, mi.StrType):
        return "str" + (f" {t.min_length}–{t.max_length} chars" if t.max_length else "") + (
            f" `{t.pattern}`" if t.pattern else "")  # fmt: skip
    if isinstance(t, mi.BoolType):
        return "bool"
    if isinstance(t, mi.LiteralType):
        return "str: " + " \\| ".join(str(v) for v in t.values)
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return f"array of {describe(t.item_type, field)}" + (f" (≤ {t.max_length})" if t.max_length else "")
    if isinstance(t, mi.TupleType):  # a fixed-length array: its items named in TUPLES
        names = TUPLES.get(field, ("",) * len(t.item_types))
        items = zip(t.item_types, names, strict=True)
        return "[" + ", ".join(f"`{n}` {describe(x, n)}" if n else describe(x) for x, n in items) + "]"
    if isinstance(t, mi.StructType):
        return f"{t.cls.__name__} map"
    if isinstance(t, mi.DictType):
        return f"map {describe(t.key_type)} → {describe(t.value_type)}"
    return type(t).__name__.removesuffix("Type").lower()


def _bounds(t: mi.IntType | mi.FloatType) -> str:
    marks = [(t.gt, ">"), (t.ge, "≥"), (t.lt, "<"), (t.le, "≤")]
    shown = [f"{op} {_num(v)}" for v, op in marks if v is not None]
    return f" {', '.join(shown)}" if shown else ""


def _day(ns: int | None) -> str:
    return datetime.fromtimestamp((ns or 0) // 10**9, UTC).date().isoformat()


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else ("2^63−1" if v == 2**63 - 1 else f"{v:,}".replace(",", "_"))


def comments(cls: type) -> dict[str, str]:
    """Field → the comment on its line in tickmesh/schema.py."""
    found = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+):[^#]*#\s*(.+)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip().replace("|", "\\|")  # a table cell
    return found


def fields(cls: type[msgspec.Struct]) -> list[mi.Field]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return list(info.fields)


def _present(t: mi.Type) -> mi.Type:
    """An event field's type when it is on the wire: events leave out None fields instead of sending nil."""
    if isinstance(t, mi.UnionType) and t.includes_none:
        rest = [x for x in t.types if not isinstance(x, mi.NoneType)]
        return rest[0] if len(rest) == 1 else mi.UnionType(tuple(rest))
    return t


def own_fields(cls: type[msgspec.Struct]) -> list[mi.Field]:
    inherited = {f.name for f in fields(schema.EventBase)}
    return [f for f in fields(cls) if f.name not in inherited]


def table(style: str, classes: list[type[msgspec.Struct]]) -> str:
    if style == "kinds":
        rows = ["| `kind` | own fields (`?` = left out when it does not apply) |", "|---|---|"]
        for cls in classes:
            notes = comments(cls)
            cells = [f"`{f.name}`{'' if f.required else '?'} {describe(_present(f.type), f.name)}"
                     + (f" ({notes[f.name]})" if f.name in notes else "") for f in own_fields(cls)]  # fmt: skip
            rows.append(f"| `{cls.__struct_config__.tag}` | {'; '.join(cells)} |")
        return "\n".join(rows)
    rows = []
    for cls in classes:
        rows += _struct_rows(style, cls) + [""]
    return "\n".join(rows).rstrip()


def _struct_rows(style: str, cls: type[msgspec.Struct]) -> list[str]:
    base = typing.get_origin(cls) or cls  # a generic struct's parameterized alias: ReplayReply[Publication]
    config, notes = base.__struct_config__, comments(base)
    if style == "array":
        rows = [f'**{base.__name__}** (position 0: `"{config.tag}"`)', "",
                "| pos | field | type | required | meaning |", "|---|---|---|---|---|"]  # fmt: skip
    else:
        tag = f'`{config.tag_field}`: `"{config.tag}"`' if config.tag else f"`{config.tag_field}` first"
        title = "**Every event**" if cls is schema.EventBase else f"**{base.__name__}** ({tag})"
        rows = [title, "", "| key | type | required | meaning |", "|---|---|---|---|"]
        if cls is schema.EventBase:
            rows.append(f"| `kind` | str: {', '.join(schema.EVENT_KINDS)} | yes | the event's kind (the tag) |")
    for i, f in enumerate(fields(cls), 1):
        default = f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
        required = "yes" if f.required else f"no (default {_value(default)})"
        cells = [str(i), f.name] if style == "array" else [f"`{f.name}`"]
        cells += [describe(f.type, f.name), required, notes.get(f.name, "")]
        rows.append(f"| {' | '.join(cells)} |")
    return rows


def _value(default: object) -> str:
    return "nil" if default is None else msgspec.json.encode(default).decode()


def render(text: str) -> str:
    """`text` (docs/wire.md) with every generated block rewritten from the structs."""

    def block(match: re.Match[str]) -> str:
        style, classes = TABLES[match.group(2)]
        return f"{match.group(1)}{table(style, classes)}\n{match.group(3)}"

    return BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 if docs/wire.md is not current (write nothing)")
    args = p.parse_args(argv)
    text = WIRE.read_text()
    fresh = render(text)
    if args.check:
        if fresh != text:
            print(f"{WIRE} is stale: run python scripts/wire_tables.py", file=sys.stderr)
            return 1
        return 0
    WIRE.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
