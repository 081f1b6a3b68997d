"""Files shipped with the package: JSON Schemas and the tutorial project.

In a wheel they live under `backfill/_data/`; in a source checkout they are the top-level
`schemas/` and `specs/` folders, which the wheel is built from.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["schema", "schema_dir", "tutorial_dir"]

_PACKAGE = Path(__file__).resolve().parent.parent


def _find(packaged: str, checkout: str) -> Path:
    inside = _PACKAGE / "_data" / packaged
    if inside.is_dir():
        return inside
    beside = _PACKAGE.parent / checkout
    if beside.is_dir():
        return beside
    raise FileNotFoundError(f"backfill installation is missing its {packaged} data")


def schema_dir() -> Path:
    return _find("schemas", "schemas")


def tutorial_dir() -> Path:
    return _find("tutorial", "specs")


@cache
def schema(kind: str) -> dict[str, Any]:
    """The draft 2020-12 JSON Schema of a `project`, `table` or `backfill` file."""
    loaded: dict[str, Any] = json.loads((schema_dir() / f"{kind}.schema.json").read_text())
    return loaded
