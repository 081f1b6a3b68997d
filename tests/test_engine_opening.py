"""The warehouse opened on a thread of its own while an apply goes on (engines.EngineOpening)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backfill.run.engines import EngineError, EngineOpening
from backfill.spec.loader import load_project
from backfill.spec.model import Project


def project(root: Path) -> Project:
    (root / "tables").mkdir(parents=True)
    (root / "project.yaml").write_text("name: p\nengine: {type: duckdb, path: .backfill/warehouse.duckdb}\n")
    (root / "tables" / "t.yaml").write_text(
        "name: t\nkind: fact\nfields:\n  - {name: id, type: BIGINT}\nsql_inline: SELECT 1 AS id\n")
    return load_project(root)


def others_can_open(path: Path) -> bool:
    """Another process opens the DuckDB file for writing: this one does not hold it."""
    done = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r}).close()"],
                          capture_output=True, timeout=60)
    return done.returncode == 0


def test_the_engine_it_opened_is_used_then_closed(tmp_path: Path) -> None:
    opening = EngineOpening(project(tmp_path))
    engine = opening.engine()
    assert engine is opening.engine()  # one engine, however often asked
    assert engine.query("SELECT 41 + 1") == [(42,)]
    assert not others_can_open(tmp_path / ".backfill" / "warehouse.duckdb")
    opening.close()
    assert others_can_open(tmp_path / ".backfill" / "warehouse.duckdb")


def test_what_opening_raised_is_raised_by_engine(tmp_path: Path) -> None:
    p = project(tmp_path)
    (tmp_path / ".backfill").mkdir()
    (tmp_path / ".backfill" / "warehouse.duckdb").mkdir()  # a folder where the file should be
    opening = EngineOpening(p)
    with pytest.raises(EngineError, match="cannot open the DuckDB warehouse"):
        opening.engine()
    opening.close()  # nothing to close, nothing raised


def test_closed_before_it_was_needed_leaves_nothing_open(tmp_path: Path) -> None:
    opening = EngineOpening(project(tmp_path))
    opening.close(wait=0)  # the caller was stopped at once: the opening may still be under way
    opening._thread.join(30)
    assert not opening._thread.is_alive()
    assert others_can_open(tmp_path / ".backfill" / "warehouse.duckdb")
    assert opening._opened is None
