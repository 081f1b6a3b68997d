"""Retries of a failed instance: every attempt is recorded with its log; a later attempt can succeed.

Real DuckDB file, real SQLite ledger, real Prefect flows on the session server.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import oracle
from conftest import warehouse_rows
from steering import cli, edit

from backfill.state.ledger import Ledger

BACKFILL = str(Path(sys.executable).parent / "backfill")
TARGET = "tutorial_logical/fct_order_buy_di/2026-07-02"






def narrow(project: Path) -> None:
    """Integration 06-26..07-02, logical 07-01..07-02 in one group: 21 + 8 instances."""
    edit(project / "backfills" / "integration.yaml", "data_timestamp: {start: 2026-06-25, end: 2026-07-14}",
         "data_timestamp: {start: 2026-06-26, end: 2026-07-02}")
    logical = project / "backfills" / "logical_tables.yaml"
    edit(logical, "data_timestamp: {start: 2026-07-01, end: 2026-07-14}",
         "data_timestamp: {start: 2026-07-01, end: 2026-07-02}")
    edit(logical, "groups: 3", "groups: 1")


def fail_on_0702(project: Path, condition: str) -> None:
    where = "WHERE o.ds = DATE '{{ ds }}'"
    edit(project / "sql" / "fct_order_buy_di.sql", where,
         where + "{% if ds == '2026-07-02' %}\n    AND " + condition + "{% endif %}")


def attempts_of(project: Path, instance: str) -> list[dict[str, object]]:
    ledger = Ledger.open(f"sqlite:///{project / '.backfill' / 'state.db'}")
    try:
        return ledger.attempts(instance)
    finally:
        ledger.close()


def test_every_attempt_is_recorded_with_its_log_until_retries_run_out(tutorial: Path, prefect_api: str) -> None:
    narrow(tutorial)
    (tutorial / "backfills" / "logical_tables.yaml").write_text(
        (tutorial / "backfills" / "logical_tables.yaml").read_text() + "retries: {count: 2, delay_seconds: 0}\n")
    fail_on_0702(tutorial, "o.quantity // 0 >= 0")

    applied = cli(tutorial, "apply", "--yes", "--json")
    assert applied.exit_code == 1, applied.output
    report = {b["name"]: b for b in json.loads(applied.stdout)["backfills"]}
    assert report["tutorial_logical"]["counts"] == {"success": 6, "failed": 1, "blocked": 1}
    assert report["tutorial_integration"]["counts"] == {"success": 21}

    doc = json.loads(cli(tutorial, "instances", "tutorial_logical", "--json").stdout)["backfills"][0]
    by_id = {i["id"]: i for i in doc["instances"]}
    assert by_id[TARGET]["status"] == "failed" and by_id[TARGET]["attempts"] == 3
    assert "Division by zero" in by_id[TARGET]["error"]
    assert by_id["tutorial_logical/dws_all/2026-07-02"]["attempts"] == 0
    assert all(i["attempts"] == 1 for i in doc["instances"] if i["status"] == "success")  # no retry of those
    assert doc["status"] == "failed"

    attempts = attempts_of(tutorial, TARGET)
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert [a["status"] for a in attempts] == ["failed"] * 3
    for a in attempts:
        log = str(a["log"])
        assert f"attempt {a['number']}/3 of {TARGET}" in log
        assert "Division by zero" in log and "Division by zero" in str(a["error"])
        assert a["sql"] and "// 0" in str(a["sql"]) and a["ended_at"] is not None
    starts = [float(a["started_at"]) for a in attempts]  # type: ignore[arg-type]
    assert starts == sorted(starts)

    logs = cli(tutorial, "logs", TARGET)
    assert logs.exit_code == 0, logs.output
    for n in (1, 2, 3):
        assert f"--- attempt {n}: failed" in logs.stdout
        assert f"attempt {n}/3 of {TARGET}" in logs.stdout
    assert logs.stdout.rstrip().endswith("AND o.quantity // 0 >= 0")  # the executed SQL comes last


def test_a_flaky_failure_succeeds_on_a_later_attempt(tutorial: Path, prefect_api: str) -> None:
    """Project-wide retries; the instance fails until a file appears, which the test creates between attempts."""
    narrow(tutorial)
    edit(tutorial / "project.yaml", "max_parallel: 4", "max_parallel: 4\nretries: {count: 3, delay_seconds: 2}")
    fail_on_0702(tutorial, "(SELECT count(*) FROM read_csv({{ source('data/flaky.csv') }}, header = true, "
                           "auto_detect = false, columns = {'x': 'INTEGER'})) >= 0")
    state = tutorial / ".backfill" / "state.db"
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(tutorial)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # wait for the first attempt to have failed
            found: list[tuple[int, str]] = []
            if state.exists():
                try:
                    con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)
                    try:
                        found = con.execute("SELECT number, status FROM bf_attempts WHERE instance_id = ?",
                                            [TARGET]).fetchall()
                    finally:
                        con.close()
                except sqlite3.Error:
                    pass
            if (1, "failed") in found:
                break
            assert proc.poll() is None and time.monotonic() < deadline, (proc.returncode, found)
            time.sleep(0.02)
        assert found == [(1, "failed")], "the second attempt started before the retry delay"
        (tutorial / "data" / "flaky.csv").write_text("x\n1\n")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, err)
    assert "backfill tutorial_logical: 8 success" in out

    attempts = attempts_of(tutorial, TARGET)
    assert [(a["number"], a["status"]) for a in attempts] == [(1, "failed"), (2, "success")]
    assert "flaky.csv" in str(attempts[0]["error"]) and "flaky.csv" in str(attempts[0]["log"])
    assert "attempt 2/4 of" in str(attempts[1]["log"]) and "wrote" in str(attempts[1]["log"])
    assert float(attempts[1]["started_at"]) - float(attempts[0]["ended_at"]) >= 2  # type: ignore[arg-type]
    doc = json.loads(cli(tutorial, "instances", "tutorial_logical", "--json").stdout)["backfills"][0]
    by_id = {i["id"]: i for i in doc["instances"]}
    assert (by_id[TARGET]["status"], by_id[TARGET]["attempts"], by_id[TARGET]["error"]) == ("success", 2, None)
    assert doc["status"] == "success"
    logs = cli(tutorial, "logs", TARGET).stdout
    assert "--- attempt 1: failed" in logs and "--- attempt 2: success" in logs
    loaded = {date(2026, 6, 26) + timedelta(days=i) for i in range(7)}
    for table in ("fct_order_buy_di", "dws_all"):
        expected = oracle.expected(tutorial, table, date(2026, 7, 2), loaded)
        assert warehouse_rows(tutorial, table, "2026-07-02") == expected
