"""Scheduling parameters end to end: runtime (and `backfill serve`), skip, dry_run, max_parallel.

Real DuckDB file, real SQLite ledger, real Prefect flows on the session server; the command line runs
in this process through typer's CliRunner.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import oracle
from conftest import warehouse_rows
from steering import LOGICAL, cli, dates, edit

from backfill.state.ledger import InstanceRow, Ledger


def days(start: date, n: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


def rows_of(project: Path, backfill: str | None = None) -> list[InstanceRow]:
    ledger = Ledger.open(f"sqlite:///{project / '.backfill' / 'state.db'}")
    try:
        return ledger.instances(backfill=backfill)
    finally:
        ledger.close()


def markers(project: Path) -> set[str]:
    con = duckdb.connect(str(project / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        found = con.execute("SELECT split_part(attempt_id, ':', 2) FROM _backfill_commits").fetchall()
        return {str(r[0]) for r in found}
    finally:
        con.close()


def test_a_future_runtime_waits_and_serve_runs_it_when_due(tutorial: Path, prefect_api: str) -> None:
    dates(tutorial, "integration", "2026-06-26", "2026-07-03")
    spec = tutorial / "backfills" / "logical_tables.yaml"
    edit(spec, LOGICAL, "data_timestamp: {start: 2026-07-02, end: 2026-07-03}")
    edit(spec, "runtime: immediately", 'runtime: "2099-01-02T03:04:05"')

    applied = cli(tutorial, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "backfill tutorial_integration: 24 success" in applied.stdout
    assert ("backfill tutorial_logical: 8 instance(s) waiting for 2099-01-02T03:04:05; "
            "`backfill serve` starts it when due") in applied.stdout
    logical = rows_of(tutorial, "tutorial_logical")
    assert len(logical) == 8 and {r.status for r in logical} == {"waiting"}
    assert all(r.attempts == 0 and r.started_at is None for r in logical)
    doc = json.loads(cli(tutorial, "instances", "--json").stdout)
    assert {b["name"]: b["status"] for b in doc["backfills"]} == {
        "tutorial_integration": "success", "tutorial_logical": "running"}  # something waits
    assert not any(m.startswith("tutorial_logical/") for m in markers(tutorial))

    # applying again does not start it either, and says so
    again = cli(tutorial, "apply", "--yes", "--json")
    assert again.exit_code == 0, again.output
    report = {b["name"]: b for b in json.loads(again.stdout)["backfills"]}
    assert report["tutorial_logical"]["scheduled_for"] == "2099-01-02T03:04:05"
    assert report["tutorial_logical"]["counts"] == {"waiting": 8}
    assert report["tutorial_integration"]["counts"] == {}

    # serve before the time: nothing runs
    early = cli(tutorial, "serve", "--once")
    assert early.exit_code == 0, early.output
    assert "ran " not in early.stdout
    assert {r.status for r in rows_of(tutorial, "tutorial_logical")} == {"waiting"}

    # the time has come (the spec now says a past time): serve --once runs it, and only it
    edit(spec, 'runtime: "2099-01-02T03:04:05"', 'runtime: "2026-01-02T03:04:05+08:00"')
    due = cli(tutorial, "serve", "--once")
    assert due.exit_code == 0, due.output
    assert "ran tutorial_logical: 8 success" in due.stdout
    assert "tutorial_integration" not in due.stdout
    logical = rows_of(tutorial, "tutorial_logical")
    assert {r.status for r in logical} == {"success"} and all(r.attempts == 1 for r in logical)
    assert all(r.attempts == 1 for r in rows_of(tutorial, "tutorial_integration"))
    loaded = set(days(date(2026, 6, 26), 8))
    for table in ("dim_customer", "dim_products", "fct_order_buy_di", "dws_all"):
        for ds in (date(2026, 7, 2), date(2026, 7, 3)):
            assert warehouse_rows(tutorial, table, ds.isoformat()) == oracle.expected(tutorial, table, ds, loaded)
    assert cli(tutorial, "serve", "--once").stdout.count("ran ") == 0  # done: nothing more to run


def test_skip_pauses_and_blocks_dry_run_succeeds_without_writing(tutorial: Path, prefect_api: str) -> None:
    dates(tutorial, "integration", "2026-07-01", "2026-07-08")
    (tutorial / "backfills" / "logical_tables.yaml").unlink()
    (tutorial / "backfills" / "logical_skip.yaml").write_text(
        "name: skipping\n"
        "targets: [{table: dim_customer}, {table: dim_products}, {table: fct_order_buy_di}]\n"
        "data_timestamp: {start: 2026-07-01, end: 2026-07-04}\n"
        "groups: 2\n"
        "skip: [dim_products]\n")
    (tutorial / "backfills" / "logical_dry.yaml").write_text(
        "name: dry\n"
        "targets: [{table: dim_customer}, {table: dim_products}, {table: fct_order_buy_di}]\n"
        "data_timestamp: {start: 2026-07-05, end: 2026-07-08}\n"
        "groups: 2\n"
        "dry_run: [dim_customer, dim_products]\n")
    applied = cli(tutorial, "apply", "--yes")
    assert applied.exit_code == 1, applied.output
    assert applied.stderr.strip().splitlines()[-1].startswith("error: 10 instance(s) did not succeed")

    skipping = {(r.table, r.ds): r for r in rows_of(tutorial, "skipping")}
    # groups: 07-01..02 and 07-03..04; dim_products is skipped on every date
    expected = {}
    for first, second in (("2026-07-01", "2026-07-02"), ("2026-07-03", "2026-07-04")):
        expected.update({("dim_customer", first): "success", ("dim_products", first): "paused",
                         ("fct_order_buy_di", first): "blocked"})
        expected.update({(t, second): "blocked" for t in ("dim_customer", "dim_products", "fct_order_buy_di")})
    assert {k: r.status for k, r in skipping.items()} == expected
    assert skipping[("dim_products", "2026-07-01")].error == "skip execution: not run (Skip Execution)"
    assert skipping[("dim_products", "2026-07-01")].mode == "skip"
    assert skipping[("fct_order_buy_di", "2026-07-01")].error == "upstream skipping/dim_products/2026-07-01 paused"
    assert all(r.attempts == 0 for k, r in skipping.items() if expected[k] != "success")

    dry = {(r.table, r.ds): r for r in rows_of(tutorial, "dry")}
    for ds in ("2026-07-05", "2026-07-06", "2026-07-07", "2026-07-08"):
        for table in ("dim_customer", "dim_products"):
            inst = dry[(table, ds)]
            assert (inst.status, inst.mode, inst.attempts, inst.rows) == ("dry_run", "dry_run", 0, None)
            assert warehouse_rows(tutorial, table, ds) == []  # nothing written
        fact = dry[("fct_order_buy_di", ds)]
        assert fact.status == "success" and fact.attempts == 1  # its downstream proceeded
        got = warehouse_rows(tutorial, "fct_order_buy_di", ds)
        assert got and len(got) == len(oracle.expected(tutorial, "fct_order_buy_di", date.fromisoformat(ds)))
        assert all(row[6:] == (None,) * 5 for row in got)  # the dimensions it joins were never written
    written = markers(tutorial)
    assert not any(m.startswith(("dry/dim_", "skipping/dim_products/")) for m in written)
    assert {m for m in written if m.startswith(("dry/", "skipping/"))} == {
        *(f"dry/fct_order_buy_di/2026-07-0{d}" for d in range(5, 9)),
        "skipping/dim_customer/2026-07-01", "skipping/dim_customer/2026-07-03"}

    doc = json.loads(cli(tutorial, "instances", "--json").stdout)
    assert {b["name"]: b["status"] for b in doc["backfills"]} == {
        "tutorial_integration": "success", "skipping": "failed", "dry": "success"}
    paused = json.loads(cli(tutorial, "instances", "skipping", "--status", "paused", "--json").stdout)
    assert sorted(i["id"] for i in paused["backfills"][0]["instances"]) == [
        "skipping/dim_products/2026-07-01", "skipping/dim_products/2026-07-03"]
    human = cli(tutorial, "instances", "dry")
    assert re.search(r"dry: success \(8 dry_run, 4 success\)", human.stdout), human.stdout


def test_max_parallel_one_never_overlaps_instances(tutorial: Path, prefect_api: str) -> None:
    edit(tutorial / "project.yaml", "max_parallel: 4", "max_parallel: 1")
    dates(tutorial, "integration", "2026-06-25", "2026-07-04")
    dates(tutorial, "logical_tables", "2026-07-01", "2026-07-04")
    applied = cli(tutorial, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    rows = rows_of(tutorial)
    assert len(rows) == 30 + 16 and {r.status for r in rows} == {"success"}
    assert len({(r.backfill, r.group) for r in rows}) == 6  # three groups each: they could overlap
    # the members of a batch run as one statement: one span per batch
    spans = sorted({(r.started_at, r.ended_at, r.batch or r.id) for r in rows})
    for (s1, e1, a), (s2, e2, b) in zip(spans, spans[1:], strict=False):
        assert s1 is not None and e1 is not None and s2 is not None and e2 is not None
        assert s1 <= e1
        assert e1 <= s2, f"{a} [{s1:.4f}, {e1:.4f}] overlaps {b} [{s2:.4f}, {e2:.4f}]"

    # and with the default cap of 4 they do overlap (the check above can fail)
    fresh = tutorial.parent / "parallel"
    fresh.mkdir()
    for part in ("project.yaml", "tables", "sql", "backfills", "data"):
        src = tutorial / part
        if src.is_dir():
            import shutil

            shutil.copytree(src, fresh / part)
        else:
            (fresh / part).write_text(src.read_text())
    edit(fresh / "project.yaml", "max_parallel: 1", "max_parallel: 4")
    again = cli(fresh, "apply", "--yes")
    assert again.exit_code == 0, again.output
    ends = sorted((r.started_at or 0.0, r.ended_at or 0.0) for r in rows_of(fresh))
    assert any(e1 > s2 for (_, e1), (s2, _) in zip(ends, ends[1:], strict=False))
