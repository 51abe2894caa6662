"""docs/wire.md's field tables are what scripts/wire_tables.py generates from the msgspec structs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wire_tables", ROOT / "scripts" / "wire_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tables_in_wire_md_are_current() -> None:
    text = (ROOT / "docs" / "wire.md").read_text()
    assert generator().render(text) == text, "docs/wire.md is stale: run python scripts/wire_tables.py"


def test_every_table_is_in_the_document_and_the_check_command_agrees() -> None:
    gen = generator()
    text = (ROOT / "docs" / "wire.md").read_text()
    assert {m.group(2) for m in gen.BLOCK.finditer(text)} == set(gen.TABLES)
    done = subprocess.run([sys.executable, "scripts/wire_tables.py", "--check"], cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr


def test_every_nanosecond_field_is_marked_for_bigint_readers() -> None:
    gen = generator()
    for _, classes in gen.TABLES.values():
        for cls in classes:
            for field in gen.fields(cls):
                if field.name.endswith("_ns") or field.name in ("epoch", "time", "timestamp"):
                    assert gen.describe(field.type, field.name).startswith("int64 ns"), (cls, field.name)


def test_a_stale_table_is_rewritten() -> None:
    text = (ROOT / "docs" / "wire.md").read_text()
    stale = text.replace("| `seq` | int | yes |  |\n", "", 1).replace("| `previous`? float", "| `previous`? str", 1)
    assert stale != text and generator().render(stale) == text
