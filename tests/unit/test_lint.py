"""The house style's checks run with the tests: ruff (lint and format) and mypy stay clean.

They look only at the files git tracks, so a `build/` folder or a stray venv cannot fail them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tracked_python_files(tool: str) -> list[str]:
    """What git tracks, less mypy's `exclude` (mypy ignores it for files it is given; ruff has --force-exclude)."""
    done = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][tool]
    excluded = [re.compile(pattern) for pattern in settings.get("exclude", [])]
    return [n for n in done.stdout.splitlines() if (ROOT / n).exists() and not any(x.search(n) for x in excluded)]


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "--force-exclude"], ["ruff", "format", "--check", "--force-exclude"], ["mypy"]],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_the_tracked_tree_is_clean(command: list[str]) -> None:
    files = tracked_python_files(command[0])
    assert files, "git ls-files found no Python files"
    done = subprocess.run(
        [sys.executable, "-m", *command, *files], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"
