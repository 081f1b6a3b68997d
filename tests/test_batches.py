"""Batches end to end on the tutorial: range templates (the integration tables) and tool-batched
per-partition templates (the logical tables, batch_size on the backfill targets), the ledger still
one instance per partition, reruns of one partition alone, and `kill -9` inside a batch."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import oracle
import pytest
from conftest import TUTORIAL_TABLES, warehouse_rows
from steering import cli

from backfill.run.apply import apply_project

BACKFILL = str(Path(sys.executable).parent / "backfill")
INTEGRATION = [date(2026, 6, 25) + timedelta(days=i) for i in range(20)]
LOGICAL = [date(2026, 7, 1) + timedelta(days=i) for i in range(14)]


def _batch_logical_tables(project: Path, size: int) -> None:
    spec = project / "backfills" / "logical_tables.yaml"
    spec.write_text(spec.read_text().replace("    fields: all\n", f"    fields: all\n    batch_size: {size}\n"))


def _markers(project: Path) -> dict[str, int]:
    con = duckdb.connect(str(project / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        return dict(con.execute("SELECT split_part(attempt_id, ':', 2), count(*) FROM _backfill_commits "
                                "GROUP BY 1").fetchall())
    finally:
        con.close()


def _ledger(project: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(str(project / ".backfill" / "state.db"))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _rows_if_any(project: Path, table: str, ds: str) -> list[tuple[object, ...]]:
    """A partition's rows; none while its table is not created yet (its backfill has not started)."""
    try:
        return warehouse_rows(project, table, ds)
    except duckdb.CatalogException:
        return []


def _assert_oracle(project: Path) -> None:
    loaded = set(INTEGRATION)
    for table in TUTORIAL_TABLES:
        for ds in (INTEGRATION if table.startswith("ods_") else LOGICAL):
            assert warehouse_rows(project, table, ds.isoformat()) == oracle.expected(project, table, ds, loaded), \
                (table, ds)


def test_batched_tutorial_matches_the_oracle_and_one_partition_reruns_alone(tutorial: Path,
                                                                            prefect_api: str) -> None:
    _batch_logical_tables(tutorial, 5)
    shown = cli(tutorial, "plan")
    assert shown.exit_code == 0, shown.output
    assert "batches of 7 (range template: one statement per batch): 3 batch(es) to run" in shown.output
    assert "batches of 5 (tool-batched: UNION ALL of the per-date SQL): 3 batch(es) to run" in shown.output
    doc = json.loads(cli(tutorial, "plan", "--format", "json").output)
    runs = {b["name"]: b["runs"] for b in doc["backfills"]}
    assert {t: r["mode"] for t, r in runs["tutorial_integration"].items()} == dict.fromkeys(
        ("ods_customer", "ods_order", "ods_product"), "range")
    assert {r["mode"] for r in runs["tutorial_logical"].values()} == {"union"}
    assert all(i.get("batch") for b in doc["backfills"] for i in b["instances"])

    report = apply_project(tutorial, say=lambda m: None)
    assert report.ok, report.backfills
    _assert_oracle(tutorial)
    assert len(_markers(tutorial)) == 116 and set(_markers(tutorial).values()) == {1}
    # one instance per partition in the ledger; the members of a batch share one span
    spans: dict[str, set[tuple[object, object]]] = defaultdict(set)
    for batch, started, ended in _ledger(tutorial, "SELECT batch, started_at, ended_at FROM bf_instances"):
        spans[str(batch)].add((started, ended))
    assert len(spans) == 9 + 12 and all(len(s) == 1 for s in spans.values())

    for instance in ("tutorial_integration/ods_order/2026-07-03", "tutorial_logical/fct_order_buy_di/2026-07-03"):
        backfill = instance.split("/")[0]
        again = cli(tutorial, "rerun", backfill, "--instance", instance)
        assert again.exit_code == 0, again.output
        markers = _markers(tutorial)
        assert markers[instance] == 2
        assert [i for i, n in markers.items() if n != 1] == [i for i in markers if markers[i] == 2]
    assert sorted(i for i, n in _markers(tutorial).items() if n == 2) == [
        "tutorial_integration/ods_order/2026-07-03", "tutorial_logical/fct_order_buy_di/2026-07-03"]
    attempts = dict(_ledger(tutorial, "SELECT instance_id, count(*) FROM bf_attempts GROUP BY instance_id"))
    assert {i: n for i, n in attempts.items() if n != 1} == {"tutorial_integration/ods_order/2026-07-03": 2,
                                                              "tutorial_logical/fct_order_buy_di/2026-07-03": 2}
    _assert_oracle(tutorial)


def test_a_batch_waits_for_upstream_of_later_dates_so_it_only_forms_where_it_can_start(tutorial: Path) -> None:
    spec = tutorial / "backfills" / "logical_tables.yaml"
    spec.write_text(spec.read_text().replace("  - table: dws_all\n    fields: all\n",
                                             "  - table: dws_all\n    fields: all\n    batch_size: 5\n"))
    doc = json.loads(cli(tutorial, "plan", "--format", "json").output)
    logical = next(b for b in doc["backfills"] if b["name"] == "tutorial_logical")
    # dws_all of day 2 reads fct_order_buy_di of day 2, which runs per partition after day 1: no batch
    assert not [i for i in logical["instances"] if i.get("batch")]
    assert logical["runs"]["dws_all"] == {"batch_size": 5, "mode": "union", "ranged": False, "batches": 0}


def _count(state: Path, where: str) -> int:
    try:
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute(f"SELECT count(*) FROM bf_instances WHERE {where}").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return -1


# kill points by ledger progress: a range batch seen running (integration: one batch of 20 per table),
# and the first tool-batched logical batch seen done (others of the same backfill still to come)
@pytest.mark.parametrize("kill_when", ["status = 'running'", "id LIKE 'tutorial_logical/%' AND status = 'success'"])
def test_kill_9_inside_a_batch_leaves_it_all_old_or_all_new_then_apply_writes_each_once(
        tutorial: Path, prefect_api: str, kill_when: str) -> None:
    _batch_logical_tables(tutorial, 5)
    spec = tutorial / "backfills" / "integration.yaml"
    spec.write_text(spec.read_text().replace("groups: 3", "groups: 1"))
    for table in ("ods_order", "ods_product", "ods_customer"):
        path = tutorial / "tables" / f"{table}.yaml"
        path.write_text(path.read_text().replace("batch_size: 7", "batch_size: 20"))
    state = tutorial / ".backfill" / "state.db"
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(tutorial)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _count(state, f"batch IS NOT NULL AND {kill_when}") < 1 and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.002)
    killed_mid_run = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed_mid_run, "the apply finished before the kill point; the test would prove nothing"

    # right after the kill: every batch committed with all its partitions, or with none of them
    members: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for iid, table, ds, batch in _ledger(tutorial, "SELECT id, table_name, ds, batch FROM bf_instances "
                                                   "WHERE batch IS NOT NULL"):
        members[str(batch)].append((str(iid), str(table), str(ds)))
    markers = _markers(tutorial) if (tutorial / ".backfill" / "warehouse.duckdb").exists() else {}
    loaded = set(INTEGRATION)
    assert len(members) == 3 + 12
    for batch, parts in members.items():
        written = [iid for iid, _, _ in parts if iid in markers]
        assert written in ([], [iid for iid, _, _ in parts]), batch
        for _, table, ds in parts:
            rows = _rows_if_any(tutorial, table, ds) if markers else []
            # old: nothing yet; new: the oracle's rows
            assert rows == (oracle.expected(tutorial, table, date.fromisoformat(ds), loaded) if written else [])

    report = apply_project(tutorial, say=lambda m: None)
    assert report.ok, report.backfills
    _assert_oracle(tutorial)
    after = _markers(tutorial)
    assert len(after) == 116 and set(after.values()) == {1}
    assert dict(_ledger(tutorial, "SELECT status, count(*) FROM bf_instances GROUP BY 1")) == {"success": 116}


CUMULATIVE = """name: cum
kind: aggregate
granularity: day
partition: ds
primary_key: [customer_id]
fields:
  - {name: customer_id, type: BIGINT}
  - {name: total, type: BIGINT}
batch_size: 4
sql_inline: |
  SELECT o.customer_id, CAST(count(*) + COALESCE(max(p.total), 0) AS BIGINT) AS total
  FROM {{ ref('ods_order') }} AS o
  LEFT JOIN {{ ref('cum') }} AS p ON p.customer_id = o.customer_id AND p.ds = DATE '{{ ds_add(ds, -1) }}'
  WHERE o.ds = DATE '{{ ds }}'
  GROUP BY o.customer_id
"""


def test_a_table_reading_its_previous_day_is_never_planned_in_one_batch_in_descending_order(
        tutorial: Path, prefect_api: str) -> None:
    (tutorial / "tables" / "cum.yaml").write_text(CUMULATIVE)
    (tutorial / "backfills" / "cum.yaml").write_text(
        "name: cum\ntargets: [{table: cum}]\ndata_timestamp: {start: 2026-07-01, end: 2026-07-12}\n"
        "groups: 2\norder: descending\n")
    assert apply_project(tutorial, ["tutorial_integration"], say=lambda m: None).ok
    doc = json.loads(cli(tutorial, "plan", "cum", "--format", "json").output)
    (plan,) = doc["backfills"]
    assert [i["id"] for i in plan["instances"] if i.get("batch")] == []
    assert plan["runs"]["cum"]["batches"] == 0
    assert "(tool-batched: UNION ALL of the per-date SQL): 0 batch(es) to run]" in cli(tutorial, "plan", "cum").output
