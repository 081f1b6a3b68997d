"""Operations on instances: pause / resume, kill, rerun (--failed, --instance, --downstream), set-success.

Real DuckDB file, real SQLite ledger, real Prefect flows on the session server. Operations run in this
process through typer's CliRunner; an apply that must be steered while it runs is a subprocess.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import oracle
from conftest import warehouse_rows
from steering import LOGICAL, cli, dates, edit, statuses
from typer.testing import Result

from backfill.state.ledger import FINISHED, InstanceRow, Ledger

BACKFILL = str(Path(sys.executable).parent / "backfill")
TABLES = ("dim_customer", "dim_products", "fct_order_buy_di", "dws_all")








def add_condition(project: Path, ds: str, condition: str) -> None:
    """fct_order_buy_di of `ds` gets one more WHERE condition (true, when it does not fail)."""
    where = "WHERE o.ds = DATE '{{ ds }}'"
    edit(project / "sql" / "fct_order_buy_di.sql", where,
         where + "{% if ds == '" + ds + "' %}\n    AND " + condition + "{% endif %}")


def gate(name: str) -> str:
    """A condition that fails while data/NAME does not exist, and holds once it does."""
    return (f"(SELECT count(*) FROM read_csv({{{{ source('data/{name}') }}}}, header = true, "
            "auto_detect = false, columns = {'x': 'INTEGER'})) >= 0")


def ledger_of(project: Path) -> Ledger:
    return Ledger.open(f"sqlite:///{project / '.backfill' / 'state.db'}")


def rows_of(project: Path, backfill: str = "tutorial_logical") -> dict[str, InstanceRow]:
    ledger = ledger_of(project)
    try:
        return {r.id: r for r in ledger.instances(backfill=backfill)}
    finally:
        ledger.close()


def attempt_counts(project: Path) -> dict[str, int]:
    """instance id -> attempt records in the ledger (every run of it, every retry)."""
    ledger = ledger_of(project)
    try:
        return {r.id: len(ledger.attempts(r.id)) for r in ledger.instances(backfill="tutorial_logical")}
    finally:
        ledger.close()


def one_error(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {message}\n"


def iid(table: str, ds: str) -> str:
    return f"tutorial_logical/{table}/{ds}"


# ---------------------------------------------------------------------------------- pause / resume




def release(fifo: Path, timeout: float = 30) -> None:
    """Let the reader of `fifo` (DuckDB, in the apply) finish: give it a small CSV and end of file."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:  # ENXIO: nobody reads it yet
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        os.write(fd, b"x\n1\n")
    finally:
        os.close(fd)


def test_pause_a_running_backfill_then_resume_it(tutorial: Path, prefect_api: str) -> None:
    dates(tutorial, "integration", "2026-06-28", "2026-07-06")
    dates(tutorial, "logical_tables", "2026-07-01", "2026-07-06")
    edit(tutorial / "backfills" / "logical_tables.yaml", "groups: 3", "groups: 2")  # 07-01..03, 07-04..06
    loaded = {date(2026, 6, 28) + timedelta(days=i) for i in range(9)}
    slow = iid("fct_order_buy_di", "2026-07-02")
    hold = tutorial / "data" / "hold.csv"
    os.mkfifo(hold)  # reading it blocks until this test writes to it: 07-02 runs as long as we want
    add_condition(tutorial, "2026-07-02", gate("hold.csv"))
    add_condition(tutorial, "2026-07-05", gate("gate.csv"))  # fails in group 2 until the gate opens
    failed = iid("fct_order_buy_di", "2026-07-05")
    by_failure = {iid("dws_all", "2026-07-05")} | {iid(t, "2026-07-06") for t in TABLES}
    released = iid("dws_all", "2026-07-02")
    held_back = {iid(t, "2026-07-03") for t in TABLES}
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(tutorial)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # 07-02 runs (and waits for the test); group 2 is over
            s = statuses(tutorial)
            later = [i for i in s if i.startswith("tutorial_logical/") and i.split("/")[2] > "2026-07-03"]
            if s.get(slow) == "running" and len(later) == 12 and all(s[i] in FINISHED for i in later):
                break
            assert proc.poll() is None and time.monotonic() < deadline, (proc.returncode, s)
            time.sleep(0.05)
        not_started = {i for i, st in s.items() if i.startswith("tutorial_logical/") and st == "waiting"}
        assert not_started == {released} | held_back

        paused = cli(tutorial, "pause", "tutorial_logical", "--json")
        assert paused.exit_code == 0, paused.output
        doc = json.loads(paused.stdout)
        assert doc["ok"] and doc["apply_running"] is True
        assert set(doc["instances"]) == not_started
        time.sleep(1.5)  # the apply reads operator flags every 0.5 s
        # resuming one of them while the apply runs: the apply starts it when it gets there
        one = cli(tutorial, "resume", released)
        assert one.exit_code == 0, one.output
        assert one.stdout == f"resumed {released}; the running apply starts it when reached\n"
        time.sleep(1.5)
        assert statuses(tutorial)[slow] == "running"
        release(hold)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (out, err)

    rows = rows_of(tutorial)
    assert rows[failed].status == "failed" and {rows[i].status for i in by_failure} == {"blocked"}
    assert rows[slow].status == "success"  # what already ran goes on
    assert rows[released].status == "success" and not rows[released].held
    first = iid("dim_customer", "2026-07-03")
    assert rows[first].status == "paused", "the pause came too late to test anything"
    assert rows[first].error == "paused by an operator; `backfill resume` runs it"
    for i in held_back:  # none of them ran: paused (held) or blocked behind what is paused
        assert rows[i].status in ("paused", "blocked") and rows[i].attempts == 0 and rows[i].held, rows[i]
    assert {i for i, r in rows.items() if r.status != "success"} == held_back | by_failure | {failed}
    assert json.loads(cli(tutorial, "instances", "tutorial_logical", "--json").stdout)["backfills"][0]["status"] \
        == "failed"
    for i in held_back:
        assert warehouse_rows(tutorial, i.split("/")[1], i.split("/")[2]) == []
    before = {i: r.started_at for i, r in rows.items() if r.status == "success"}

    resumed = cli(tutorial, "resume", "tutorial_logical")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith("resuming 4 instance(s) of tutorial_logical\n"
                                     "backfill tutorial_logical: 4 success;")
    rows = rows_of(tutorial)
    assert all(rows[i].status == "success" and rows[i].attempts == 1 for i in held_back)
    assert not any(r.held for r in rows.values())
    assert all(rows[i].started_at == t for i, t in before.items())  # what had succeeded did not run again
    # what the failure blocked is not the pause's: resume leaves it (and the failure) alone
    assert rows[failed].status == "failed" and rows[failed].attempts == 1
    assert all(rows[i].status == "blocked" and rows[i].attempts == 0 for i in by_failure)
    assert warehouse_rows(tutorial, "dws_all", "2026-07-05") == []
    assert json.loads(cli(tutorial, "instances", "tutorial_logical", "--json").stdout)["backfills"][0]["status"] \
        == "failed"

    hold.unlink()
    hold.write_text("x\n1\n")  # the recorded SQL of 07-02 reads it too, if it runs again (it must not)
    (tutorial / "data" / "gate.csv").write_text("x\n1\n")
    fixed = cli(tutorial, "rerun", "tutorial_logical", "--failed")
    assert fixed.exit_code == 0, fixed.output
    assert "backfill tutorial_logical: 6 success;" in fixed.stdout
    assert {r.status for r in rows_of(tutorial).values()} == {"success"}
    assert json.loads(cli(tutorial, "instances", "tutorial_logical", "--json").stdout)["backfills"][0]["status"] \
        == "success"
    for table in TABLES:
        for n in range(1, 7):
            ds = date(2026, 7, n)
            assert warehouse_rows(tutorial, table, ds.isoformat()) == oracle.expected(tutorial, table, ds, loaded)

    one_error(cli(tutorial, "resume", "tutorial_logical"),  # nothing is paused any more
              "nothing to resume in 'tutorial_logical': no instance is paused, skipped or held; "
              "all 24 instance(s) succeeded")


# ---------------------------------------------------------------------------------- no apply running


def test_pause_and_kill_without_a_running_apply_and_their_errors(tutorial: Path) -> None:
    one_error(cli(tutorial, "kill", "tutorial_logical"), "no ledger yet: nothing was applied in this project")
    # a scheduled backfill records its instances `waiting` without running anything (no Prefect needed)
    (tutorial / "backfills" / "integration.yaml").unlink()
    spec = tutorial / "backfills" / "logical_tables.yaml"
    edit(spec, LOGICAL, "data_timestamp: {start: 2026-07-01, end: 2026-07-03}")
    edit(spec, "runtime: immediately", 'runtime: "2099-01-01T00:00:00"')
    applied = cli(tutorial, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    # watching a backfill that waits for its runtime, with no apply running: it stops and says why
    one_error(cli(tutorial, "instances", "--watch"),
              "scheduled for later: tutorial_logical; `backfill serve` starts them when due")
    why = cli(tutorial, "why", iid("dim_customer", "2026-07-01"), "--json")
    assert why.exit_code == 0, why.output
    assert json.loads(why.stdout)["waits"] == [{"kind": "schedule", "instance": None, "detail":
                                                "its scheduled time 2099-01-01T00:00:00; `backfill serve` "
                                                "(or an apply then) starts it"}]
    ledger = ledger_of(tutorial)
    try:  # set statuses directly, as an apply would have left them
        ledger.set_flags([iid(t, "2026-07-01") for t in TABLES], status="success")
        ledger.set_flags([iid("fct_order_buy_di", "2026-07-02")], status="running", started_at=time.time())
        ledger.set_flags([iid("dws_all", "2026-07-02")], status="pending")
    finally:
        ledger.close()

    one = cli(tutorial, "pause", iid("dws_all", "2026-07-03"))
    assert one.exit_code == 0, one.output
    assert one.stdout == f"pause: 1 instance(s) of {iid('dws_all', '2026-07-03')}; done\n"
    rows = rows_of(tutorial)
    paused = rows[iid("dws_all", "2026-07-03")]
    assert (paused.status, paused.held) == ("paused", True)
    assert paused.error == "paused by an operator; `backfill resume` runs it"

    everything = cli(tutorial, "pause", "tutorial_logical", "--json")
    assert everything.exit_code == 0, everything.output
    doc = json.loads(everything.stdout)
    expected = {iid("dws_all", "2026-07-02"), iid("dim_customer", "2026-07-02"), iid("dim_products", "2026-07-02"),
                *(iid(t, "2026-07-03") for t in TABLES[:3])}  # pending and waiting ones only
    assert doc == {"ok": True, "apply_running": False, "instances": sorted(expected, key=list(rows).index)}
    rows = rows_of(tutorial)
    assert {i for i, r in rows.items() if r.status == "paused"} == expected | {iid("dws_all", "2026-07-03")}
    assert rows[iid("fct_order_buy_di", "2026-07-02")].status == "running"
    one_error(cli(tutorial, "pause", "tutorial_logical"),
              "nothing to pause: no instance of 'tutorial_logical' is pending or waiting")
    one_error(cli(tutorial, "pause", iid("dim_customer", "2026-07-01")),
              f"nothing to pause: no instance of '{iid('dim_customer', '2026-07-01')}' is pending or waiting")

    killed = cli(tutorial, "kill", iid("fct_order_buy_di", "2026-07-02"))
    assert killed.exit_code == 0, killed.output
    assert killed.stdout == f"kill: 1 instance(s) of {iid('fct_order_buy_di', '2026-07-02')}; done\n"
    row = rows_of(tutorial)[iid("fct_order_buy_di", "2026-07-02")]
    assert (row.status, row.error, row.kill_requested) == ("killed", "killed by an operator", True)
    assert row.ended_at is not None
    one_error(cli(tutorial, "kill", "tutorial_logical"),
              "nothing to kill: no instance of 'tutorial_logical' is pending, waiting or running")
    one_error(cli(tutorial, "kill", iid("fct_order_buy_di", "2026-07-02")),
              f"nothing to kill: no instance of '{iid('fct_order_buy_di', '2026-07-02')}' is pending, "
              "waiting or running")

    # unknown backfills and instances: one `error:` line, exit 1, for every operation
    unknown_bf = "no backfill 'nope' in the ledger (known: tutorial_logical)"
    unknown_id = "no instance 'tutorial_logical/dws_all/2030-01-01'; list them with `backfill instances`"
    for verb in ("kill", "pause", "resume"):
        one_error(cli(tutorial, verb, "nope"), unknown_bf)
        one_error(cli(tutorial, verb, "tutorial_logical/dws_all/2030-01-01"), unknown_id)
    one_error(cli(tutorial, "rerun", "nope"), unknown_bf)
    one_error(cli(tutorial, "set-success", "tutorial_logical/dws_all/2030-01-01"), unknown_id)
    one_error(cli(tutorial, "logs", "tutorial_logical/dws_all/2030-01-01"), unknown_id)
    one_error(cli(tutorial, "instances", "nope"), "no backfill 'nope' in the ledger")
    one_error(cli(tutorial, "rerun", "tutorial_logical", "--instance", "other/dws_all/2026-07-01"),
              "no instance 'other/dws_all/2026-07-01' in backfill 'tutorial_logical'")
    one_error(cli(tutorial, "set-success", "tutorial_logical"), "set-success takes one instance id BACKFILL/TABLE/DS")
    as_json = cli(tutorial, "kill", "nope", "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout) == {"ok": False, "errors": [{"message": unknown_bf}]}
    assert cli(tutorial, "kill").exit_code == 2  # bad usage

    # nothing was executed by any of this
    assert all(r.attempts == 0 for r in rows_of(tutorial).values())


# ---------------------------------------------------------------------------------- rerun and set-success


def _counts(result: Result) -> dict[str, Any]:
    return {b["name"]: b["counts"] for b in json.loads(result.stdout)["backfills"]}


def test_rerun_failed_instance_downstream_and_set_success(tutorial: Path, prefect_api: str) -> None:
    dates(tutorial, "integration", "2026-06-25", "2026-07-04")
    dates(tutorial, "logical_tables", "2026-07-01", "2026-07-04")
    edit(tutorial / "backfills" / "logical_tables.yaml", "groups: 3", "groups: 2")  # 07-01..02, 07-03..04
    add_condition(tutorial, "2026-07-02", gate("gate_a.csv"))
    add_condition(tutorial, "2026-07-04", gate("gate_b.csv"))
    loaded = {date(2026, 6, 25) + timedelta(days=i) for i in range(10)}
    fct2, dws2, fct4, dws4 = (iid("fct_order_buy_di", "2026-07-02"), iid("dws_all", "2026-07-02"),
                              iid("fct_order_buy_di", "2026-07-04"), iid("dws_all", "2026-07-04"))

    first = cli(tutorial, "apply", "--yes", "--json")
    assert first.exit_code == 1, first.output
    assert _counts(first)["tutorial_logical"] == {"success": 12, "failed": 2, "blocked": 2}
    rows = rows_of(tutorial)
    assert {i for i, r in rows.items() if r.status == "failed"} == {fct2, fct4}
    assert {i for i, r in rows.items() if r.status == "blocked"} == {dws2, dws4}
    assert "gate_a.csv" in (rows[fct2].error or "")
    attempts = attempt_counts(tutorial)
    assert attempts == {i: (0 if i in (dws2, dws4) else 1) for i in rows}

    # --failed: the failed and blocked ones run again (the gates are still shut: they fail again)
    again = cli(tutorial, "rerun", "tutorial_logical", "--failed")
    assert again.exit_code == 1, again.output
    assert again.stdout.startswith("rerunning 4 instance(s) of tutorial_logical\n")
    assert "backfill tutorial_logical: 2 blocked, 2 failed;" in again.stdout
    assert again.stderr == "error: 4 instance(s) did not succeed\n"
    now = attempt_counts(tutorial)
    assert {i for i in now if now[i] != attempts[i]} == {fct2, fct4} and now[fct2] == 2
    attempts = now
    logs = json.loads(cli(tutorial, "logs", fct2, "--json").stdout)
    assert [a["status"] for a in logs["attempts"]] == ["failed", "failed"]
    assert all("gate_a.csv" in a["log"] for a in logs["attempts"])

    # --instance: only that one, not what it blocked
    (tutorial / "data" / "gate_a.csv").write_text("x\n1\n")
    single = cli(tutorial, "rerun", "tutorial_logical", "--instance", fct2)
    assert single.exit_code == 0, single.output
    assert single.stdout.startswith("rerunning 1 instance(s) of tutorial_logical\n"
                                    "backfill tutorial_logical: 1 success;")
    now = attempt_counts(tutorial)
    assert {i for i in now if now[i] != attempts[i]} == {fct2}
    attempts = now
    rows = rows_of(tutorial)
    assert rows[fct2].status == "success" and rows[dws2].status == "blocked"

    # --instance X --downstream: X and what depends on it on that date, nothing else
    dim2 = iid("dim_products", "2026-07-02")
    down = cli(tutorial, "rerun", "tutorial_logical", "--instance", dim2, "--downstream", "--json")
    assert down.exit_code == 0, down.output
    assert json.loads(down.stdout)["counts"] == {"success": 3}
    now = attempt_counts(tutorial)
    assert {i for i in now if now[i] != attempts[i]} == {dim2, fct2, dws2}
    text = cli(tutorial, "logs", dws2).stdout
    assert text.startswith(f"{dws2}: success") and text.count("--- attempt 1: success") == 1
    logs = cli(tutorial, "logs", fct2).stdout  # one attempt per run of it, numbered on across reruns
    assert [n for n in range(1, 6) if f"--- attempt {n}: " in logs] == [1, 2, 3, 4]
    attempts = now
    for table in TABLES:
        ds = date(2026, 7, 2)
        assert warehouse_rows(tutorial, table, ds.isoformat()) == oracle.expected(tutorial, table, ds, loaded)

    # set-success on the failed one: recorded success without running; apply does not run it again
    ok = cli(tutorial, "set-success", fct4)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"{fct4}: success (set by operator).")
    row = rows_of(tutorial)[fct4]
    assert (row.status, row.error) == ("success", "set to success by an operator (not executed)")
    assert warehouse_rows(tutorial, "fct_order_buy_di", "2026-07-04") == []  # nothing was written
    applied = cli(tutorial, "apply", "--yes", "--json")
    assert applied.exit_code == 0, applied.output
    assert _counts(applied) == {"tutorial_integration": {}, "tutorial_logical": {"success": 1}}  # only dws4
    now = attempt_counts(tutorial)
    assert {i for i in now if now[i] != attempts[i]} == {dws4}
    assert rows_of(tutorial)[fct4].status == "success"
    doc = json.loads(cli(tutorial, "instances", "--json").stdout)
    assert {b["name"]: b["status"] for b in doc["backfills"]} == {
        "tutorial_integration": "success", "tutorial_logical": "success"}
    assert cli(tutorial, "apply", "--yes", "--json").exit_code == 0
    assert attempt_counts(tutorial) == now  # and the next apply has nothing to do

    one_error(cli(tutorial, "rerun", "tutorial_logical", "--failed"),
              "nothing to rerun in 'tutorial_logical' (no failed instance)")


def test_set_success_refuses_an_instance_of_a_running_apply(tutorial: Path) -> None:
    (tutorial / "backfills" / "integration.yaml").unlink()
    dates(tutorial, "logical_tables", "2026-07-01", "2026-07-01")
    edit(tutorial / "backfills" / "logical_tables.yaml", "runtime: immediately", 'runtime: "2099-01-01T00:00:00"')
    assert cli(tutorial, "apply", "--yes").exit_code == 0
    ledger = ledger_of(tutorial)
    try:  # another live process (this one) holds the apply lock
        assert ledger.try_lock("apply") is None
        target = iid("dws_all", "2026-07-01")
        one_error(cli(tutorial, "set-success", target), f"{target} is waiting in a running apply; kill it first")
        assert ledger.instance(target).status == "waiting"  # type: ignore[union-attr]
    finally:
        ledger.unlock()
        ledger.close()
    assert cli(tutorial, "set-success", target).exit_code == 0
    assert rows_of(tutorial)[target].status == "success"
