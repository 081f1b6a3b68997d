"""End-to-end execution on the tutorial: real DuckDB file, real SQLite ledger, real Prefect flows."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import oracle
import pytest
from conftest import TUTORIAL_TABLES, warehouse_rows

from backfill.run.apply import apply_project
from backfill.state.ledger import Ledger

INTEGRATION = [date(2026, 6, 25) + timedelta(days=i) for i in range(20)]
LOGICAL = [date(2026, 7, 1) + timedelta(days=i) for i in range(14)]


def _ledger(project: Path) -> Ledger:
    return Ledger.open(f"sqlite:///{project / '.backfill' / 'state.db'}")


def _statuses(project: Path, backfill: str) -> dict[str, str]:
    ledger = _ledger(project)
    try:
        return {r.id: r.status for r in ledger.instances(backfill=backfill)}
    finally:
        ledger.close()


def test_tutorial_backfill_matches_the_oracle_and_second_apply_does_nothing(tutorial: Path, prefect_api: str) -> None:
    report = apply_project(tutorial, say=lambda m: None)
    assert report.ok, report.backfills
    counts = {b.name: b.counts for b in report.backfills}
    assert counts == {"tutorial_integration": {"success": 60}, "tutorial_logical": {"success": 56}}
    loaded = set(INTEGRATION)
    for table in TUTORIAL_TABLES:
        days = INTEGRATION if table.startswith("ods_") else LOGICAL
        for ds in days:
            expected = oracle.expected(tutorial, table, ds, loaded)
            assert warehouse_rows(tutorial, table, ds.isoformat()) == expected, (table, ds)
    assert sum(len(oracle.expected(tutorial, "dws_all", d, loaded)) for d in LOGICAL) > 100

    again = apply_project(tutorial, say=lambda m: None)
    assert again.nothing_to_do
    assert all(not b.counts for b in again.backfills)


def test_a_failing_instance_blocks_only_its_downstream_and_the_rest_of_its_group(
        tutorial: Path, prefect_api: str) -> None:
    sql = tutorial / "sql" / "fct_order_buy_di.sql"
    sql.write_text(sql.read_text().replace(
        "    o.quantity,",
        "    {% if ds == '2026-07-03' %}o.quantity // 0 AS quantity,{% else %}o.quantity,{% endif %}"))
    report = apply_project(tutorial, say=lambda m: None)
    assert not report.ok
    status = _statuses(tutorial, "tutorial_logical")
    bad = {i: s for i, s in status.items() if s != "success"}
    # groups of 14 dates in 3: 07-01..07-05, 07-06..07-10, 07-11..07-14
    expected_bad = {"tutorial_logical/fct_order_buy_di/2026-07-03": "failed",
                    "tutorial_logical/dws_all/2026-07-03": "blocked"}
    for day in ("2026-07-04", "2026-07-05"):
        for table in ("dim_customer", "dim_products", "fct_order_buy_di", "dws_all"):
            expected_bad[f"tutorial_logical/{table}/{day}"] = "blocked"
    assert bad == expected_bad
    ledger = _ledger(tutorial)
    try:
        failed = ledger.instance("tutorial_logical/fct_order_buy_di/2026-07-03")
        assert failed is not None and failed.error and "Division by zero" in failed.error
        assert ledger.attempts(failed.id)[0]["status"] == "failed"
    finally:
        ledger.close()
    # the failed date's partition was never written; other groups' partitions are right
    assert warehouse_rows(tutorial, "fct_order_buy_di", "2026-07-03") == []
    loaded = set(INTEGRATION)
    for ds in LOGICAL[5:]:
        assert warehouse_rows(tutorial, "dws_all", ds.isoformat()) == oracle.expected(tutorial, "dws_all", ds, loaded)

    # fix the template: apply re-runs the failed and blocked instances only
    sql.write_text(sql.read_text().replace(
        "{% if ds == '2026-07-03' %}o.quantity // 0 AS quantity,{% else %}o.quantity,{% endif %}", "o.quantity,"))
    fixed = apply_project(tutorial, say=lambda m: None)
    assert fixed.ok
    logical = next(b for b in fixed.backfills if b.name == "tutorial_logical")
    assert logical.counts == {"success": len(expected_bad)}
    for ds in LOGICAL[:5]:
        assert warehouse_rows(tutorial, "dws_all", ds.isoformat()) == oracle.expected(tutorial, "dws_all", ds, loaded)


@pytest.mark.parametrize("groups,order", [(1, "descending"), (12, "ascending")])
def test_order_and_groups_are_honoured(tutorial: Path, prefect_api: str, groups: int, order: str) -> None:
    spec = tutorial / "backfills" / "integration.yaml"
    spec.write_text(spec.read_text().replace("groups: 3", f"groups: {groups}")
                    .replace("order: ascending", f"order: {order}"))
    (tutorial / "backfills" / "logical_tables.yaml").unlink()
    report = apply_project(tutorial, say=lambda m: None)
    assert report.ok
    ledger = _ledger(tutorial)
    try:
        rows = ledger.instances(backfill="tutorial_integration", ds=None)
    finally:
        ledger.close()
    orders = [r for r in rows if r.table == "ods_order"]
    if groups == 1:
        starts = [r.started_at or 0 for r in sorted(orders, key=lambda r: r.ds, reverse=True)]
        assert starts == sorted(starts), "descending: later dates start first"
    else:
        assert len({r.group for r in orders}) == 12


def test_flow_runs_are_readable_on_the_prefect_server(tutorial: Path, prefect_api: str) -> None:
    import httpx

    (tutorial / "backfills" / "logical_tables.yaml").unlink()
    spec = tutorial / "backfills" / "integration.yaml"
    spec.write_text(spec.read_text().replace("name: tutorial_integration", "name: named_on_server"))
    assert apply_project(tutorial, say=lambda m: None).ok
    flows = httpx.post(f"{prefect_api}/flow_runs/filter",
                       json={"flow_runs": {"name": {"any_": ["named_on_server"]}}}).json()
    assert len(flows) == 1 and flows[0]["state_type"] == "COMPLETED"
    tasks: list[dict[str, object]] = []
    for _ in range(100):  # the server records task runs from their events, a moment after the flow
        tasks = httpx.post(f"{prefect_api}/task_runs/filter",
                           json={"flow_runs": {"id": {"any_": [flows[0]["id"]]}}}).json()
        if len(tasks) == 3:
            break
        time.sleep(0.1)
    assert sorted(str(t["name"]) for t in tasks) == [
        "named_on_server group 1: 2026-06-25..2026-07-01 (21 instances)",
        "named_on_server group 2: 2026-07-02..2026-07-08 (21 instances)",
        "named_on_server group 3: 2026-07-09..2026-07-14 (18 instances)",
    ]
    artifacts = httpx.post(f"{prefect_api}/artifacts/filter",
                           json={"artifacts": {"key": {"any_": ["named-on-server-group-1"]}}}).json()
    assert artifacts, "a table artifact lists the group's instances"
    assert "named_on_server/ods_order/2026-06-25" in str(artifacts[0]["data"])
