"""A small project built in a test: integration tables loaded from CSV files it writes, and logical
tables with inline SQL (for cases the tutorial does not have)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

TABLE = """name: {name}
kind: {kind}
granularity: day
partition: ds
primary_key: [k]
fields:
{fields}
{extra}sql_inline: |
  {sql}
"""


def new_project(root: Path, backfill: str) -> Path:
    """An empty project with one backfill `all`: `backfill` holds its targets (and anything else)."""
    project = root / "p"
    for sub in ("tables", "backfills", "data"):
        (project / sub).mkdir(parents=True)
    (project / "project.yaml").write_text(
        "name: p\ndialect: duckdb\nengine: {type: duckdb, path: .backfill/warehouse.duckdb}\n"
        "state: .backfill/state.db\nmax_parallel: 4\n")
    (project / "backfills" / "all.yaml").write_text(f"name: all\n{backfill}")
    return project


def add_table(project: Path, name: str, kind: str, fields: Sequence[str], sql: str, extra: str = "") -> None:
    """A table of BIGINT fields keyed by `k`; `extra`: more spec lines (e.g. `batch_size: 3\\n`)."""
    listed = "\n".join(f"  - {{name: {f}, type: BIGINT}}" for f in fields)
    (project / "tables" / f"{name}.yaml").write_text(
        TABLE.format(name=name, kind=kind, fields=listed, extra=extra, sql=sql))


def source_values(days: Sequence[str]) -> list[tuple[str, int, int]]:
    """(day, k, v) rows: keys 1..3 on each day, v = 100 * (index of the day) + k."""
    return [(ds, k, 100 * n + k) for n, ds in enumerate(days) for k in (1, 2, 3)]


def add_source_table(project: Path, name: str, file: str, days: Sequence[str], extra: str = "",
                     value: str = "v") -> None:
    """An integration table `name` (k, v) loading one day of data/`file` (written with source_values);
    `value`: the SQL of its v column."""
    with (project / "data" / file).open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["day", "k", "v"])
        out.writerows(source_values(days))
    add_table(project, name, "integration", ("k", "v"),
              f"SELECT k, {value} AS v FROM read_csv({{{{ source('data/{file}') }}}}, header = true, "
              "auto_detect = false, columns = {'day': 'DATE', 'k': 'BIGINT', 'v': 'BIGINT'}) "
              "WHERE day = DATE '{{ ds }}'", extra)
