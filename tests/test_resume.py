"""Resume what was held (skipped instances included), set success and resume scheduling, and the
Data Backfill Instances page at 80 columns and by data timestamp.

Real DuckDB file, real SQLite ledger, real Prefect flows on the session server; the warehouse is
compared with the oracle.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import oracle
import pytest
from conftest import warehouse_rows
from steering import cli, dates, edit
from test_operations import gate, iid, one_error, rows_of

TABLES = ("dim_customer", "dim_products", "fct_order_buy_di", "dws_all")
LOADED = {date(2026, 6, 25) + timedelta(days=i) for i in range(10)}  # integration 06-25..07-04


def _small(project: Path, logical_end: str, groups: int) -> None:
    dates(project, "integration", "2026-06-25", "2026-07-04")
    dates(project, "logical_tables", "2026-07-01", logical_end)
    edit(project / "backfills" / "logical_tables.yaml", "groups: 3", f"groups: {groups}")


def _by_date(project: Path) -> list[tuple[str, str, dict[str, int]]]:
    result = cli(project, "instances", "tutorial_logical", "--by-date", "--json")
    assert result.exit_code == 0, result.output
    [doc] = json.loads(result.stdout)["backfills"]
    return [(d["ds"], d["status"], d["counts"]) for d in doc["dates"]]


def _why(project: Path, instance: str) -> dict[str, Any]:
    result = cli(project, "why", instance, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_resume_runs_skipped_instances_and_what_they_blocked(tutorial: Path, prefect_api: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _small(tutorial, "2026-07-04", groups=2)  # groups 07-01..02 and 07-03..04
    edit(tutorial / "backfills" / "logical_tables.yaml", "skip: none", "skip: [fct_order_buy_di]")
    first = cli(tutorial, "apply", "--yes")
    assert first.exit_code == 1, first.output
    rows = rows_of(tutorial)
    skipped = {iid("fct_order_buy_di", d) for d in ("2026-07-01", "2026-07-03")}
    assert {i for i, r in rows.items() if r.status == "paused"} == skipped
    assert {i for i, r in rows.items() if r.status == "success"} == {
        iid(t, d) for t in ("dim_customer", "dim_products") for d in ("2026-07-01", "2026-07-03")}
    assert all(r.status == "blocked" and r.attempts == 0 for i, r in rows.items()
               if r.status not in ("paused", "success"))
    assert _by_date(tutorial) == [
        ("2026-07-01", "failed", {"blocked": 1, "paused": 1, "success": 2}),
        ("2026-07-02", "failed", {"blocked": 4}),
        ("2026-07-03", "failed", {"blocked": 1, "paused": 1, "success": 2}),
        ("2026-07-04", "failed", {"blocked": 4})]
    ended = cli(tutorial, "instances", "tutorial_logical", "--watch")  # it has ended: one page, exit 1
    assert ended.exit_code == 1 and ended.stdout.startswith("--- ") and ended.stdout.count("--- ") == 1
    assert ended.stdout.endswith("\nended: tutorial_logical failed\n")
    assert ended.stderr == "error: tutorial_logical ended failed; `backfill why ID` explains an instance\n"
    monkeypatch.setenv("COLUMNS", "80")
    page = cli(tutorial, "instances", "tutorial_logical", "--by-date")
    assert page.exit_code == 0, page.output
    lines = page.stdout.splitlines()
    assert lines[0] == "tutorial_logical: failed (10 blocked, 2 paused, 4 success)"
    assert lines[1].split() == ["ds", "status", "start", "time", "n", "counts"]
    assert lines[2].startswith("2026-07-01  failed  ") and lines[2].endswith("  4  1 blocked, 1 paused, 2 success")
    assert lines[3] == "2026-07-02  failed  -                   -   4  4 blocked"
    assert max(len(line) for line in lines) <= 80

    resumed = cli(tutorial, "resume", "tutorial_logical")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith("resuming 12 instance(s) of tutorial_logical\n"
                                     "backfill tutorial_logical: 12 success;")
    rows = rows_of(tutorial)
    assert {r.status for r in rows.values()} == {"success"}
    assert {r.mode for r in rows.values()} == {"run"} and not any(r.held for r in rows.values())
    for table in TABLES:
        for n in range(1, 5):
            ds = date(2026, 7, n)
            assert warehouse_rows(tutorial, table, ds.isoformat()) == oracle.expected(tutorial, table, ds, LOADED)
    assert {d[1] for d in _by_date(tutorial)} == {"success"}

    one_error(cli(tutorial, "resume", "tutorial_logical"),
              "nothing to resume in 'tutorial_logical': no instance is paused, skipped or held; "
              "all 16 instance(s) succeeded")
    fct = iid("fct_order_buy_di", "2026-07-01")
    one_error(cli(tutorial, "resume", fct), f"nothing to resume: {fct} is success, neither paused, skipped nor held")
    # resume steers the recorded run; the spec decides what later applies do: without the skip, nothing is left
    edit(tutorial / "backfills" / "logical_tables.yaml", "skip: [fct_order_buy_di]", "skip: none")
    again = cli(tutorial, "apply", "--yes", "--json")
    assert again.exit_code == 0, again.output
    assert {b["name"]: b["counts"] for b in json.loads(again.stdout)["backfills"]} == {
        "tutorial_integration": {}, "tutorial_logical": {}}


def test_set_success_resume_runs_what_it_was_blocking(tutorial: Path, prefect_api: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _small(tutorial, "2026-07-03", groups=1)
    edit(tutorial / "sql" / "dim_products.sql", "WHERE p.ds = DATE '{{ ds }}'",
         "WHERE p.ds = DATE '{{ ds }}'{% if ds == '2026-07-02' %}\n    AND " + gate("gate.csv") + "{% endif %}")
    first = cli(tutorial, "apply", "--yes")
    assert first.exit_code == 1, first.output
    failed = iid("dim_products", "2026-07-02")
    rows = rows_of(tutorial)
    assert rows[failed].status == "failed" and "gate.csv" in (rows[failed].error or "")
    blocked = {iid("fct_order_buy_di", "2026-07-02"), iid("dws_all", "2026-07-02")} | {
        iid(t, "2026-07-03") for t in TABLES}
    assert {i for i, r in rows.items() if r.status == "blocked"} == blocked

    monkeypatch.setenv("COLUMNS", "80")
    page = cli(tutorial, "instances", "tutorial_logical")
    assert page.exit_code == 0, page.output
    lines = page.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert lines[0] == "tutorial_logical: failed (6 blocked, 1 failed, 5 success)"
    assert lines[1].split() == ["instance", "grp", "status", "start", "end", "time", "rows"]
    at = lines.index(next(line for line in lines if line.startswith("dim_products/2026-07-02 ")))
    assert lines[at].split()[1:3] == ["1", "failed"]
    assert lines[at + 1].startswith("    ") and lines[at + 1].endswith("IO… see logs")
    assert lines[-1] == "cut errors: `backfill logs tutorial_logical/TABLE/DS` shows them whole"
    fct = lines.index(next(line for line in lines if line.startswith("fct_order_buy_di/2026-07-02 ")))
    assert lines[fct + 1] == "    upstream dim_products/2026-07-02 failed"  # ids relative to the backfill
    later = lines.index(next(line for line in lines if line.startswith("dws_all/2026-07-03 ")))
    assert lines[later + 1] == "    an earlier date of its group failed or was paused"

    # why: a blocked instance's root cause two levels up, a later date's, the failed one itself
    error = rows[failed].error or ""
    fct2, dws2 = iid("fct_order_buy_di", "2026-07-02"), iid("dws_all", "2026-07-02")
    deep = _why(tutorial, dws2)
    assert [(link["id"], link["status"]) for link in deep["chain"]] == [(fct2, "blocked"), (failed, "failed")]
    assert deep["summary"] == "blocked: root cause dim_products/2026-07-02 failed"
    assert deep["root_attempt"]["status"] == "failed" and deep["root_attempt"]["error"] == error
    assert deep["last_attempt"] is None and deep["waits"] == []
    assert [(r["table"], r["ranges"], r["present"], r["expected"]) for r in deep["reads"]] == [
        ("ods_order", [["2026-06-26", "2026-07-02"]], 7, 7), ("fct_order_buy_di", [["2026-07-02", "2026-07-02"]], 0, 1)]
    human = cli(tutorial, "why", dws2).stdout.splitlines()
    assert human[:2] == [f"{dws2}: blocked: root cause dim_products/2026-07-02", "    failed"]  # 80 columns
    at = human.index("blocked by:")
    assert human[at + 1:at + 4] == ["  fct_order_buy_di/2026-07-02 blocked",
                                    "    upstream dim_products/2026-07-02 failed",
                                    "    dim_products/2026-07-02 failed <- root cause"]
    assert human[at + 4].startswith("      EngineError: writing dim_products partition 2026-07-02 failed")
    assert human[at + 5].startswith("root cause's last attempt 1 failed, started ")
    assert human[at + 6] == f"its whole log: backfill logs {failed}"
    assert max(len(line) for line in human) <= 80
    later_why = _why(tutorial, iid("dws_all", "2026-07-03"))
    assert [(link["id"], link["status"]) for link in later_why["chain"]] == [(failed, "failed")]
    unknown = "tutorial_logical/dws_all/2030-01-01"
    one_error(cli(tutorial, "why", unknown), f"no instance '{unknown}'; list them with `backfill instances`")
    itself = _why(tutorial, failed)
    assert itself["summary"] == f"failed: {error}" and itself["chain"] == []
    assert itself["last_attempt"]["error"] == error and itself["log"] == f"backfill logs {failed}"

    ok = cli(tutorial, "set-success", failed, "--resume")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"{failed}: success (set by operator); running the 6 instance(s) it was blocking\n"
                                "backfill tutorial_logical: 6 success;")
    rows = rows_of(tutorial)
    assert {r.status for r in rows.values()} == {"success"}
    assert rows[failed].attempts == 1 and rows[failed].error == "set to success by an operator (not executed)"
    assert warehouse_rows(tutorial, "dim_products", "2026-07-02") == []  # set, not executed
    for table in TABLES:  # the chain went on: 07-03 is complete and equal to the oracle
        ds = date(2026, 7, 3)
        assert warehouse_rows(tutorial, table, ds.isoformat()) == oracle.expected(tutorial, table, ds, LOADED)
    facts = warehouse_rows(tutorial, "fct_order_buy_di", "2026-07-02")
    assert facts and {r[7] for r in facts} == {None}  # built without the products of 07-02 (brand is None)

    again = cli(tutorial, "set-success", failed, "--resume")  # already success: refused (it would only make
    assert again.exit_code == 1 and again.stderr == (  # its downstream stale), nothing changes
        f"error: {failed} was already set to success by an operator; nothing to set (rerun it with "
        f"`backfill rerun tutorial_logical --instance {failed}` to recompute it)\n")
    assert {r.status for r in rows_of(tutorial).values()} == {"success"}

    # why a partition is stale: one it read was written after it, or its table's spec changed
    fct1 = iid("fct_order_buy_di", "2026-07-01")
    assert _why(tutorial, fct1)["summary"] == "success, current"
    assert cli(tutorial, "rerun", "tutorial_logical", "--instance", iid("dim_products", "2026-07-01")).exit_code == 0
    stale = _why(tutorial, fct1)
    assert stale["stale"] == ["dim_products 2026-07-01 written after it"]
    assert stale["summary"] == "success, stale: dim_products 2026-07-01 written after it"
    edit(tutorial / "sql" / "dws_all.sql", "GROUP BY f.customer_id", "GROUP BY f.customer_id -- edited")
    assert _why(tutorial, iid("dws_all", "2026-07-01"))["stale"] == [
        "the spec of dws_all (template, fields or key) changed since it ran"]
