"""The console scripts of pyproject.toml as launchers running this tree's code, as pip would write them."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from tests.mesh import ROOT


def console_scripts() -> dict[str, str]:
    """Script name → `module:function`, from pyproject.toml."""
    scripts: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return scripts


def write_launchers(folder: Path) -> Path:
    """One executable per console script in `folder` (this interpreter, this tree first on sys.path)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in console_scripts().items():
        module, function = target.split(":")
        path = folder / name
        path.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
            f"from {module} import {function}\nsys.exit({function}())\n"
        )
        path.chmod(0o755)
    return folder
