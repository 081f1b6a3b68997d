"""Watching and killing an apply from a second terminal.

The apply runs as a `backfill apply` subprocess (talking to the session Prefect server); one instance
of the tutorial, fct_order_buy_di of 2026-07-02, runs a query that would take minutes in DuckDB. While
it runs, `backfill instances` (in this process: the second terminal) shows it, `backfill kill` stops
it, and `backfill logs` tells what happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
from steering import statuses
from typer.testing import CliRunner, Result

from backfill.cli import main as cli_main

BACKFILL = str(Path(sys.executable).parent / "backfill")
SLOW = "tutorial_logical/fct_order_buy_di/2026-07-02"
TABLES = ("dim_customer", "dim_products", "fct_order_buy_di", "dws_all")
GROUP_1 = [f"2026-07-0{d}" for d in range(1, 6)]  # 14 dates in 3 groups: 07-01..05, 07-06..10, 07-11..14



def cli(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli_main.app, [*args, "--project", str(project)])


def make_slow(project: Path, ds: str, rows: int) -> None:
    """fct_order_buy_di of `ds` scans `rows` generated rows first (same result, much longer)."""
    sql = project / "sql" / "fct_order_buy_di.sql"
    text = sql.read_text()
    where = "WHERE o.ds = DATE '{{ ds }}'"
    assert text.count(where) == 1
    sql.write_text(text.replace(where, where + "{% if ds == '" + ds + "' %}\n    AND (SELECT sum(hash(r.range)) "
                                f"FROM range({rows}) AS r) IS NOT NULL{{% endif %}}"))




def wait_for(project: Path, ok: Any, what: str, proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        found = statuses(project)
        if ok(found):
            return found
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the apply ended (rc {proc.returncode}) before {what}:\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {found}")
        time.sleep(0.05)


def instances_json(project: Path, *args: str) -> dict[str, Any]:
    result = cli(project, "instances", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_watch_a_running_instance_then_kill_it(tutorial: Path, prefect_api: str) -> None:
    spec = tutorial / "backfills" / "integration.yaml"  # fewer integration dates: a faster test
    spec.write_text(spec.read_text().replace("{start: 2026-06-25, end: 2026-07-14}",
                                             "{start: 2026-06-30, end: 2026-07-05}"))
    make_slow(tutorial, "2026-07-02", 20_000_000_000)  # minutes of work if nothing stops it
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(tutorial)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def settled(s: dict[str, str]) -> bool:  # the slow one runs; groups 2 and 3 are done
            later = [i for i, st in s.items() if i.startswith("tutorial_logical/") and i.split("/")[2] > "2026-07-05"]
            return s.get(SLOW) == "running" and len(later) == 36 and all(s[i] == "success" for i in later)

        wait_for(tutorial, settled, f"{SLOW} running", proc)

        # ---- the Data Backfill Instances view from another terminal
        doc = instances_json(tutorial, "tutorial_logical")
        [backfill] = doc["backfills"]
        assert backfill["name"] == "tutorial_logical"
        assert backfill["status"] == "running"
        by_status: dict[str, set[str]] = {}
        for inst in backfill["instances"]:
            by_status.setdefault(inst["status"], set()).add(inst["id"])
        waiting = {"tutorial_logical/dws_all/2026-07-02"} | {
            f"tutorial_logical/{t}/{d}" for t in TABLES for d in GROUP_1[2:]}
        assert by_status["running"] == {SLOW}
        assert by_status["waiting"] == waiting
        assert len(by_status["success"]) == 56 - 1 - len(waiting)
        assert set(by_status) == {"running", "waiting", "success"}
        running = next(i for i in backfill["instances"] if i["id"] == SLOW)
        assert running["started_at"] and running["ended_at"] is None and running["attempts"] == 1

        only_running = instances_json(tutorial, "tutorial_logical", "--status", "running")
        assert [i["id"] for b in only_running["backfills"] for i in b["instances"]] == [SLOW]
        assert only_running["backfills"][0]["status"] == "running"  # rolled up over all instances
        day = instances_json(tutorial, "--date", "2026-07-02")
        assert {i["id"]: i["status"] for b in day["backfills"] for i in b["instances"]} == {
            "tutorial_logical/dim_customer/2026-07-02": "success",
            "tutorial_logical/dim_products/2026-07-02": "success",
            SLOW: "running",
            "tutorial_logical/dws_all/2026-07-02": "waiting",
            "tutorial_integration/ods_product/2026-07-02": "success",
            "tutorial_integration/ods_customer/2026-07-02": "success",
            "tutorial_integration/ods_order/2026-07-02": "success",
        }
        both = instances_json(tutorial, "tutorial_logical", "--status", "waiting", "--date", "2026-07-04")
        assert {i["id"] for b in both["backfills"] for i in b["instances"]} == {
            f"tutorial_logical/{t}/2026-07-04" for t in TABLES}
        everything = instances_json(tutorial)
        assert {b["name"]: b["status"] for b in everything["backfills"]} == {
            "tutorial_integration": "success", "tutorial_logical": "running"}
        human = cli(tutorial, "instances", "tutorial_logical", "--date", "2026-07-02")
        assert human.exit_code == 0, human.output
        assert "tutorial_logical: running" in human.stdout
        assert "fct_order_buy_di/2026-07-02" in human.stdout and "running" in human.stdout
        log_now = cli(tutorial, "logs", SLOW)
        assert log_now.exit_code == 0 and f"{SLOW}: running" in log_now.stdout
        assert "range(20000000000)" in log_now.stdout  # the SQL it runs

        # ---- kill it
        killed = cli(tutorial, "kill", SLOW)
        assert killed.exit_code == 0, killed.output
        asked = time.monotonic()
        assert "kill: 1 instance(s)" in killed.stdout and "running apply" in killed.stdout
        wait_for(tutorial, lambda s: s.get(SLOW) == "killed", f"{SLOW} killed", proc, timeout=10)
        assert time.monotonic() - asked < 6, "the kill took effect too slowly"
        out, err = proc.communicate(timeout=30)
        ended = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (out, err)
    assert ended < 20, f"the apply went on {ended:.1f}s after the kill: the SQL was not interrupted"
    assert "killed   tutorial_logical/fct_order_buy_di/2026-07-02: killed by an operator" in out
    assert err.strip().splitlines()[-1].startswith("error: 14 instance(s) did not succeed")

    final = instances_json(tutorial, "tutorial_logical")["backfills"][0]
    assert final["status"] == "failed"
    got = {i["id"]: (i["status"], i["error"]) for i in final["instances"]}
    blocked = {i for i, (s, _) in got.items() if s == "blocked"}
    assert blocked == {"tutorial_logical/dws_all/2026-07-02"} | {
        f"tutorial_logical/{t}/{d}" for t in TABLES for d in GROUP_1[2:]}
    assert got["tutorial_logical/dws_all/2026-07-02"][1] == f"upstream {SLOW} killed"
    assert got["tutorial_logical/dim_customer/2026-07-03"][1] == "an earlier date of its group failed or was paused"
    assert got[SLOW] == ("killed", "killed by an operator")
    assert {i for i, (s, _) in got.items() if s == "success"} == set(got) - blocked - {SLOW}
    assert all(i["attempts"] == 0 for i in final["instances"] if i["id"] in blocked)

    # the partition was never written: no write marker, no rows
    con = duckdb.connect(str(tutorial / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        markers = con.execute("SELECT count(*) FROM _backfill_commits WHERE split_part(attempt_id, ':', 2) = ?",
                              [SLOW]).fetchone()
        rows = con.execute("SELECT count(*) FROM fct_order_buy_di WHERE ds = DATE '2026-07-02'").fetchone()
        done = con.execute("SELECT count(*) FROM _backfill_commits "
                           "WHERE split_part(attempt_id, ':', 2) LIKE 'tutorial_logical/%'").fetchone()
    finally:
        con.close()
    assert markers == (0,) and rows == (0,)
    assert done == (56 - 1 - len(blocked),)

    # ---- logs after the end: the attempt's log and the executed SQL
    logs = cli(tutorial, "logs", SLOW)
    assert logs.exit_code == 0, logs.output
    text = logs.stdout
    assert text.startswith(f"{SLOW}: killed (killed by an operator)")
    assert "--- attempt 1: killed" in text
    assert "attempt 1/1 of tutorial_logical/fct_order_buy_di/2026-07-02" in text
    assert "killed: the running SQL was interrupted and rolled back" in text
    assert "--- SQL" in text and "WHERE o.ds = DATE '2026-07-02'" in text and "range(20000000000)" in text
    as_json = json.loads(cli(tutorial, "logs", SLOW, "--json").stdout)
    assert as_json["status"] == "killed" and [a["status"] for a in as_json["attempts"]] == ["killed"]
    assert as_json["attempts"][0]["ended_at"] - as_json["attempts"][0]["started_at"] < 60

    ok = cli(tutorial, "logs", "tutorial_logical/dim_customer/2026-07-02")
    assert ok.exit_code == 0 and "--- attempt 1: success" in ok.stdout and "wrote 45 row(s)" in ok.stdout
    typo = cli(tutorial, "instances", "--status", "runing")
    assert typo.exit_code == 2 and "'runing' is not a status" in typo.output
    assert cli(tutorial, "instances", "--date", "2026-7-2").exit_code == 2
    never = cli(tutorial, "logs", "tutorial_logical/dws_all/2026-07-02")
    assert never.exit_code == 0 and "blocked" in never.stdout and "no attempt yet" in never.stdout
