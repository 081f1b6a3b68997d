"""A killed upstream backfill holds its readers: `backfill kill tutorial_integration` during an apply
of both tutorial backfills blocks every logical instance that reads a partition the kill left
unwritten (naming that upstream instance); one more apply then ends equal to the oracle, each
missing partition written exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import duckdb
import oracle
from conftest import TUTORIAL_TABLES, warehouse_rows
from steering import cli, dates, edit, statuses

from backfill.run.apply import apply_project
from backfill.state.ledger import Ledger

BACKFILL = str(Path(sys.executable).parent / "backfill")
SLOW = "tutorial_integration/ods_order/2026-07-02"
WHERE = "WHERE CAST(order_time AS DATE) BETWEEN DATE '{{ start_ds }}' AND DATE '{{ end_ds }}'"
SLOW_CLAUSE = ("{% if start_ds <= '2026-07-02' <= end_ds %}\n  AND (SELECT sum(hash(r.range)) "
               "FROM range(20000000000) AS r) IS NOT NULL{% endif %}")  # the batch holding 07-02


def _wait_running(project: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 180
    while statuses(project).get(SLOW) != "running":
        if proc.poll() is not None:
            raise AssertionError(f"the apply ended before {SLOW} ran: {proc.communicate()}")
        assert time.monotonic() < deadline, statuses(project)
        time.sleep(0.05)


def _markers(project: Path) -> list[str]:
    con = duckdb.connect(str(project / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT split_part(attempt_id, ':', 2) FROM _backfill_commits").fetchall()]
    finally:
        con.close()


def test_a_killed_upstream_backfill_blocks_its_readers_then_apply_repairs(tutorial: Path, prefect_api: str) -> None:
    dates(tutorial, "integration", "2026-06-26", "2026-07-03")
    dates(tutorial, "logical_tables", "2026-07-01", "2026-07-03")
    sql = tutorial / "sql" / "ods_order.sql"
    original = sql.read_text()
    edit(sql, WHERE, WHERE + SLOW_CLAUSE)
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(tutorial)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_running(tutorial, proc)
        killed = cli(tutorial, "kill", "tutorial_integration")
        assert killed.exit_code == 0, killed.output
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)

    ledger = Ledger.open(f"sqlite:///{tutorial / '.backfill' / 'state.db'}")
    try:
        rows = {r.id: r for r in ledger.instances()}
    finally:
        ledger.close()
    assert rows[SLOW].status == "killed"
    bad = {i for i, r in rows.items() if r.status != "success"}
    for iid, row in rows.items():  # nothing succeeded that read a partition the kill left unwritten
        if iid.startswith("tutorial_logical/"):
            assert row.upstream, iid  # a logical instance reads integration partitions of this apply
            if row.status == "success":
                assert not set(row.upstream) & bad, iid
            else:
                assert row.status == "blocked", (iid, row.status)
                named = row.error.split()[1] if row.error and row.error.startswith("upstream ") else None
                assert named in bad or "earlier date" in (row.error or ""), (iid, row.error)
    fct = rows["tutorial_logical/fct_order_buy_di/2026-07-02"]
    assert fct.status == "blocked" and fct.error == f"upstream {SLOW} killed"
    assert {rows[f"tutorial_logical/dws_all/2026-07-0{d}"].status for d in (2, 3)} == {"blocked"}  # 7-day window

    sql.write_text(original)
    before = _markers(tutorial)
    again = cli(tutorial, "apply", "--yes")
    assert again.exit_code == 0, again.output
    written = Counter(_markers(tutorial)) - Counter(before)
    assert written == Counter(bad)  # each partition the kill left unwritten, exactly once
    integration = {date(2026, 6, 26) + timedelta(days=n) for n in range(8)}
    for table in TUTORIAL_TABLES:
        days = sorted(integration) if table.startswith("ods_") else [date(2026, 7, d) for d in (1, 2, 3)]
        for ds in days:
            assert warehouse_rows(tutorial, table, ds.isoformat()) == \
                oracle.expected(tutorial, table, ds, integration), (table, ds)
    assert apply_project(tutorial, say=lambda m: None).nothing_to_do


def test_a_failed_batch_blocks_its_window_readers_by_name_never_as_a_cycle(tmp_path: Path, prefect_api: str) -> None:
    from small_project import add_source_table, add_table, new_project, source_values

    days = [(date(2026, 1, 1) + timedelta(days=n)).isoformat() for n in range(15)]
    project = new_project(tmp_path, "targets: [{table: src}]\nscope: downstream\n"
                          f"data_timestamp: {{start: {days[0]}, end: {days[-1]}}}\ngroups: 3\norder: descending\n")
    add_source_table(project, "src", "a.csv", days, extra="batch_size: 3\n",
                     value="{% if ds == '2026-01-05' %}CAST('x' AS BIGINT){% else %}v{% endif %}")
    add_table(project, "win", "aggregate", ("k", "s7"),
              "SELECT s.k, SUM(s.v) AS s7 FROM {{ ref('src') }} AS s "
              "WHERE s.ds BETWEEN DATE '{{ ds_add(ds, -6) }}' AND DATE '{{ ds }}' GROUP BY s.k")
    report = apply_project(project, say=lambda m: None)
    assert not report.ok
    ledger = Ledger.open(f"sqlite:///{project / '.backfill' / 'state.db'}")
    try:
        rows = {r.id: r for r in ledger.instances("all")}
    finally:
        ledger.close()
    errors = {i: r.error or "" for i, r in rows.items() if r.status == "blocked"}
    assert not [i for i, e in errors.items() if "cycle" in e], errors
    assert all(e.startswith(("upstream all/src/", "an earlier date of its group")) for e in errors.values()), errors
    assert errors["all/win/2026-01-11"] == "upstream all/src/2026-01-05 failed"
    # what did succeed holds the source's values; nothing of the failed batch was written
    values = source_values(days)
    done = [i for i, r in rows.items() if i.startswith("all/src/") and r.status == "success"]
    assert done
    for iid in done:
        ds = iid.rsplit("/", 1)[1]
        assert warehouse_rows(project, "src", ds) == [(k, v) for d, k, v in values if d == ds], iid
    for ds in ("2026-01-03", "2026-01-04", "2026-01-05"):
        assert rows[f"all/src/{ds}"].status == "failed"
        assert warehouse_rows(project, "src", ds) == []
