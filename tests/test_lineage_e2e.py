"""Partition lineage end to end: one `scope: downstream` backfill from the integration tables, read
sets across dates and groups, compared with the oracle computed from the source files."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import oracle
import pytest
from conftest import warehouse_rows
from steering import cli
from tutorial_copy import copy_tutorial

from backfill.plan.status import project_status
from backfill.run.apply import apply_project, run_again
from backfill.spec.tutorial import generate_source_data

FIXTURES = Path(__file__).parent / "fixtures" / "lineage_tables"
DAYS = [date(2026, 6, 28) + timedelta(days=n) for n in range(6)]  # 06-28 .. 07-03: a month boundary
TABLES = ("ods_order", "fct_order_buy_di", "dws_all", "cum_orders", "mtd_orders", "all_orders")


def lineage_project(root: Path, groups: int, order: str) -> Path:
    """The shipped tutorial plus a cumulative, a month-to-date and a no-predicate table, in one backfill."""
    project = copy_tutorial(root / "retail", shipped=True)
    generate_source_data(project)
    for f in FIXTURES.glob("*.yaml"):
        shutil.copy(f, project / "tables" / f.name)
    spec = project / "backfills" / "tutorial.yaml"
    text = spec.read_text().replace("{start: 2026-06-24, end: 2026-07-14}", "{start: 2026-06-28, end: 2026-07-03}")
    spec.write_text(text.replace("groups: 3", f"groups: {groups}").replace("order: ascending", f"order: {order}"))
    return project


def assert_matches_oracle(project: Path) -> None:
    loaded = set(DAYS)
    for table in TABLES:
        for ds in DAYS:
            want = oracle.lineage_expected(project, table, ds, loaded)
            assert warehouse_rows(project, table, ds.isoformat()) == want, (table, ds)


@pytest.mark.parametrize(("groups", "order"), [(1, "descending"), (3, "ascending"), (3, "descending"),
                                               (12, "ascending")])
def test_one_downstream_backfill_equals_the_oracle(tmp_path: Path, prefect_api: str, groups: int,
                                                   order: str) -> None:
    project = lineage_project(tmp_path, groups, order)
    report = apply_project(project, say=lambda m: None)
    assert report.ok, report.backfills
    assert report.backfills[0].counts == {"success": 10 * len(DAYS)}
    assert_matches_oracle(project)
    assert sum(len(oracle.lineage_expected(project, "dws_all", d, set(DAYS))) for d in DAYS) > 50


def _plan_json(project: Path) -> dict[str, Any]:
    result = cli(project, "plan", "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_rewriting_one_upstream_partition_makes_exactly_its_readers_stale(tmp_path: Path, prefect_api: str) -> None:
    project = lineage_project(tmp_path, 3, "ascending")
    assert apply_project(project, say=lambda m: None).ok
    rerun = run_again(project, "tutorial", ["tutorial/ods_order/2026-06-30"], say=lambda m: None)
    assert rerun.counts == {"success": 1}

    later = ["2026-06-30", "2026-07-01", "2026-07-02", "2026-07-03"]
    expected = {("fct_order_buy_di", "2026-06-30"), ("mtd_orders", "2026-06-30")} \
        | {("dws_all", d) for d in later} | {("cum_orders", d) for d in later} \
        | {("all_orders", d.isoformat()) for d in DAYS}
    plan = _plan_json(project)["backfills"][0]
    stale = {(i["table"], i["ds"]): i["reason"] for i in plan["instances"] if i["action"] != "done"}
    assert set(stale) == expected
    assert stale[("dws_all", "2026-07-03")] == "upstream ods_order 2026-06-30 rewritten after"
    assert stale[("cum_orders", "2026-07-01")] == "upstream cum_orders/2026-06-30 runs first"

    status = project_status(project, today=date(2026, 8, 1))
    by_status = {(t.table, ds) for t in status.tables for ds, s in t.dates.items() if s == "stale"}
    assert by_status == expected
    assert status.totals["stale"] == len(expected)

    report = apply_project(project, say=lambda m: None)
    assert report.ok and report.backfills[0].counts == {"success": len(expected)}
    assert_matches_oracle(project)
    assert project_status(project, today=date(2026, 8, 1)).totals["stale"] == 0
    assert apply_project(project, say=lambda m: None).nothing_to_do


def test_plan_refuses_to_read_a_table_never_built(tmp_path: Path) -> None:
    project = copy_tutorial(tmp_path / "retail", shipped=True)
    (project / "backfills" / "tutorial.yaml").write_text(
        "name: orders_only\ntargets: [{table: ods_order}]\nscope: downstream\n"
        "data_timestamp: {start: 2026-07-01, end: 2026-07-03}\n")
    for args in (["plan"], ["apply", "--yes"]):
        result = cli(project, *args)
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines() == [
            "error: backfills/tutorial.yaml: fct_order_buy_di reads dim_customer 2026-07-01..2026-07-03, which was "
            "never built and this plan does not build it; add dim_customer to the targets, or use "
            "`scope: downstream` from ods_customer"], result.output
    assert not (project / ".backfill").exists()  # a refused first apply leaves no ledger, warehouse or Prefect home
