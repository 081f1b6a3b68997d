"""Staleness by lineage as `status`, `plan` and `why` report it (backfill/plan/freshness.py): a
partition is as current as its oldest column, and a partition that read a stale one is stale too.
Values are checked against the source file."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from conftest import warehouse_rows
from small_project import add_source_table, add_table, new_project
from steering import cli

from backfill.run.apply import apply_project, run_again

DAYS = ("2026-01-01", "2026-01-02", "2026-01-03")
SCOPE = "targets: {}\nscope: downstream\ndata_timestamp: {{start: 2026-01-01, end: 2026-01-03}}\n"


def _json(project: Path, *args: str) -> Any:
    result = cli(project, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _stale(project: Path) -> dict[str, list[str]]:
    return {t["table"]: sorted(ds for ds, s in t["dates"].items() if s == "stale")
            for t in _json(project, "status")["tables"]}


def _change_source(project: Path, file: str, ds: str) -> None:
    path = project / "data" / file
    rows = [r if r[0] != ds else [r[0], r[1], str(int(r[2]) + 1000)] for r in csv.reader(path.open())]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_a_field_backfill_leaves_the_partition_stale_while_another_column_is(tmp_path: Path,
                                                                             prefect_api: str) -> None:
    project = new_project(tmp_path, SCOPE.format("[{table: src}, {table: src2}]"))
    add_source_table(project, "src", "a.csv", DAYS)
    add_source_table(project, "src2", "b.csv", DAYS)
    add_table(project, "f", "aggregate", ("k", "a", "b"),
           "SELECT s.k, s.v AS a, (SELECT t.v FROM {{ ref('src2') }} AS t WHERE t.k = s.k "
           "AND t.ds = DATE '{{ ds }}') AS b FROM {{ ref('src') }} AS s WHERE s.ds = DATE '{{ ds }}'")
    assert apply_project(project, say=lambda m: None).ok
    _change_source(project, "b.csv", "2026-01-02")
    assert run_again(project, "all", ["all/src2/2026-01-02"], say=lambda m: None).counts == {"success": 1}
    assert _stale(project)["f"] == ["2026-01-02"]

    (project / "backfills" / "fa.yaml").write_text("name: fa\ntargets: [{table: f, fields: [a]}]\n"
                                                   "data_timestamp: [2026-01-02]\n")
    assert apply_project(project, ["fa"], say=lambda m: None).ok
    assert _stale(project)["f"] == ["2026-01-02"]  # its column b still holds the old src2 values
    plan = _json(project, "plan", "all")["backfills"][0]["instances"]
    assert [(i["id"], i["action"], i["reason"]) for i in plan if i["action"] != "done"] == [
        ("all/f/2026-01-02", "stale", "upstream src2 2026-01-02 rewritten after")]
    assert _json(project, "why", "all/f/2026-01-02")["stale"] == ["src2 2026-01-02 written after it"]
    assert _json(project, "why", "fa/f/2026-01-02")["stale"] == []  # the column it wrote is current

    assert apply_project(project, say=lambda m: None).ok
    assert _stale(project)["f"] == []
    assert warehouse_rows(project, "f", "2026-01-02") == [(1, 101, 1101), (2, 102, 1102), (3, 103, 1103)]


def test_why_names_an_upstream_partition_that_is_itself_stale(tmp_path: Path, prefect_api: str) -> None:
    project = new_project(tmp_path, SCOPE.format("[{table: src}]"))
    add_source_table(project, "src", "a.csv", DAYS)
    for name, up in (("mid", "src"), ("top", "mid")):
        add_table(project, name, "aggregate", ("k", "v"),
               f"SELECT u.k, u.v FROM {{{{ ref('{up}') }}}} AS u WHERE u.ds = DATE '{{{{ ds }}}}'")
    assert apply_project(project, say=lambda m: None).ok
    assert run_again(project, "all", ["all/src/2026-01-02"], say=lambda m: None).counts == {"success": 1}

    assert _stale(project) == {"src": [], "mid": ["2026-01-02"], "top": ["2026-01-02"]}
    why = _json(project, "why", "all/top/2026-01-02")
    assert why["stale"] == ["upstream mid 2026-01-02 is stale"]
    assert why["summary"] == "success, stale: upstream mid 2026-01-02 is stale"
    assert _json(project, "why", "all/top/2026-01-03")["summary"] == "success, current"
