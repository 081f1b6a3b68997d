"""Operations whose words must match what happened: a rerun the lock refuses says nothing ran."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from steering import cli, statuses
from test_contract_fixes import _project


def _held_by(p: Path, proc: subprocess.Popen[bytes]) -> None:
    con = sqlite3.connect(p / ".backfill" / "state.db")
    con.execute("INSERT INTO bf_locks (name, pid, host, purpose, acquired_at) VALUES ('apply', ?, ?, 'apply', ?)",
                (proc.pid, socket.gethostname(), time.time()))
    con.commit()
    con.close()


@pytest.mark.parametrize("command", [
    ("rerun", "bf", "--instance", "bf/a/2026-01-01"),
    ("rerun", "bf", "--instance", "bf/a/2026-01-01", "--json"),
    ("rerun", "bf", "--instance", "bf/a/2026-01-01", "--instance", "bf/a/2026-01-01"),
    ("resume", "bf/b/2026-01-01"),
    ("set-success", "bf/b/2026-01-01", "--resume"),
])
def test_an_operation_refused_by_the_lock_announces_nothing_and_changes_nothing(tmp_path: Path, prefect_api: str,
                                                                   command: tuple[str, ...]) -> None:
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\nscope: downstream\n"
                                 "data_timestamp: [2026-01-01]\nskip: [b]\n")
    applied = cli(p, "apply", "--yes")
    assert applied.exit_code == 1, applied.output  # b skipped (paused), c blocked
    before = _instances(p)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _held_by(p, holder)
        refused = cli(p, *command)
    finally:
        holder.kill()
        holder.wait()
    assert refused.exit_code == 1, refused.output
    assert refused.stdout == "" if "--json" not in command else '"ok": false' in refused.stdout
    assert "rerunning" not in refused.output and "resuming" not in refused.output
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"error: another apply holds the ledger lock: pid {holder.pid}")
    assert _instances(p) == before  # statuses, modes, held flags, errors: as they were

    # with the lock free, the same command says it runs, and does
    con = sqlite3.connect(p / ".backfill" / "state.db")
    con.execute("DELETE FROM bf_locks")
    con.commit()
    con.close()
    again = cli(p, *command)
    assert again.exit_code == 0, again.output
    if "--json" in command:
        assert '"ok": true' in again.stdout and "rerunning" not in again.stdout
    elif command[0] == "rerun":
        first, second = again.stdout.splitlines()[:2]
        assert first == "rerunning 1 instance(s) of bf"
        assert second.startswith("backfill bf: 1 success; 1 row(s) in "), again.stdout
    elif command[0] == "resume":
        assert again.stdout.splitlines()[0] == "resuming 2 instance(s) of bf"
        assert "2 success" in again.stdout
    else:
        assert again.stdout.splitlines()[0] == ("bf/b/2026-01-01: success (set by operator); running the 1 "
                                                "instance(s) it was blocking")
        assert "1 success" in again.stdout
    if command[0] != "rerun":  # what was held or set runs, and what it blocked
        assert {i: s for i, (s, *_) in _instances(p).items()} == {f"bf/{t}/2026-01-01": "success" for t in "abc"}


def _instances(p: Path) -> dict[str, tuple[object, ...]]:
    con = sqlite3.connect(p / ".backfill" / "state.db")
    try:
        rows = con.execute("SELECT id, status, mode, held, error, attempts FROM bf_instances").fetchall()
    finally:
        con.close()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_kill_of_a_whole_backfill_during_apply_ends_every_unfinished_instance_killed(
        tutorial: Path, prefect_api: str) -> None:
    from test_monitoring import BACKFILL, SLOW, make_slow, wait_for

    spec = tutorial / "backfills" / "integration.yaml"  # fewer integration dates: a faster test
    spec.write_text(spec.read_text().replace("{start: 2026-06-25, end: 2026-07-14}",
                                             "{start: 2026-06-30, end: 2026-07-05}"))
    make_slow(tutorial, "2026-07-02", 20_000_000_000)
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(tutorial)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def settled(s: dict[str, str]) -> bool:  # the slow one runs; the other groups are done
            later = [i for i, st in s.items() if i.startswith("tutorial_logical/") and i.split("/")[2] > "2026-07-05"]
            return s.get(SLOW) == "running" and len(later) == 36 and all(s[i] == "success" for i in later)

        before = wait_for(tutorial, settled, f"{SLOW} running", proc)
        killed = cli(tutorial, "kill", "tutorial_logical")
        assert killed.exit_code == 0, killed.output
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (out, err)
    asked = int(killed.stdout.split("kill: ")[1].split(" instance(s)")[0])
    final = json.loads(cli(tutorial, "instances", "tutorial_logical", "--json").stdout)["backfills"][0]
    got = {i["id"]: (i["status"], i["error"]) for i in final["instances"]}
    unfinished = {i for i, (s, _) in got.items() if s != "success"}
    assert SLOW in unfinished and len(unfinished) == asked, (asked, got)
    assert {got[i] for i in unfinished} == {("killed", "killed by an operator")}, got
    assert all(before.get(i) != "success" for i in unfinished)


LINKED_READS = {
    "literal": ("read_csv('data/orders.csv', header = true)", "2:6",
                "read_csv may only read files under the project's source folders: 'data/orders.csv' leads out of "
                "the source folders through a symbolic link; give a regular file"),
    "source": ("read_csv({{ source('data/orders.csv') }}, header = true)", "2:15",
               "template: source('data/orders.csv'): 'data/orders.csv' leads out of the source folders through a "
               "symbolic link; give a regular file"),
    "glob": ("read_csv({{ source('data/*.csv') }}, header = true)", "2:15",
             "template: source('data/*.csv'): 'data/*.csv' matches "
             "'data/orders.csv', which leads out of the source folders through a symbolic link; remove the link or "
             "narrow the pattern"),
    "literal_glob": ("read_csv(['data/a.csv', 'data/**/*.csv'], header = true)", "2:6",
                     "read_csv may only read files under the project's source folders: 'data/**/*.csv' matches "
                     "'data/orders.csv', which leads out of the source folders through a symbolic link; remove the "
                     "link or narrow the pattern"),
}


@pytest.mark.parametrize("case", sorted(LINKED_READS))
def test_validate_refuses_a_read_that_a_link_inside_a_source_folder_leads_out(tmp_path: Path, case: str) -> None:
    from test_adversarial import ODS, project

    call, at, message = LINKED_READS[case]
    root = project(tmp_path, {"sql/ods_order.sql": ODS.format(call), "data/a.csv": "order_id\n1\n"})
    secret = tmp_path / "secret.csv"
    secret.write_text("order_id,customer_id,amount,order_time\n1,1,1,2026-07-01\n")
    (root / "data" / "orders.csv").symlink_to(secret)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    for command in ("validate", "apply"):
        result = cli(root, command, *(["--yes"] if command == "apply" else []))
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
        assert errors == [f"error: sql/ods_order.sql:{at}: {message} (table ods_order, 2026-07-01)"], result.stderr
        assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before  # nothing written

    # the same reads of a regular file in its place pass
    (root / "data" / "orders.csv").unlink()
    shutil.copy(secret, root / "data" / "orders.csv")
    assert cli(root, "validate").exit_code == 0


def test_a_saved_plan_refused_on_a_first_apply_leaves_no_ledger_and_no_warehouse(
        tutorial: Path, prefect_api: str, tmp_path: Path) -> None:
    def files() -> list[str]:
        return sorted(p.relative_to(tutorial).as_posix() for p in tutorial.rglob("*"))

    spec = tutorial / "backfills" / "logical_tables.yaml"
    made = tmp_path / "made.json"
    assert cli(tutorial, "plan", "--out", str(made)).exit_code == 0
    elsewhere = json.loads(made.read_text())
    elsewhere["state_fingerprint"] = "0" * 16  # made against a ledger since deleted
    (tmp_path / "gone.json").write_text(json.dumps(elsewhere))
    before = files()
    assert ".backfill" not in before
    spec.write_text(spec.read_text().replace("groups: 3", "groups: 2"))
    changed = files()
    refused = cli(tutorial, "apply", "--yes", str(made))
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: {made}: the specs changed since this plan was made; run `backfill plan --out` again")
    assert files() == changed  # no .backfill: no ledger, no warehouse, no Prefect home

    spec.write_text(spec.read_text().replace("groups: 2", "groups: 3"))
    gone = cli(tutorial, "apply", "--yes", str(tmp_path / "gone.json"))
    assert gone.exit_code == 1, gone.output
    assert gone.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'gone.json'}: this plan was made against a ledger that is not there any more; "
        "run `backfill plan --out` again")
    assert files() == before
    applied = cli(tutorial, "apply", "--yes", str(made))
    assert applied.exit_code == 0, applied.output
    assert (tutorial / ".backfill" / "state.db").exists()


@pytest.mark.parametrize(("call", "written"), [
    ("dynamic_identifier(o.customer_id)", "IDENTIFIER"),  # sqlglot knows the node; it writes another name
    ("a_i_forecast(o.amount)", "FORECAST"),
])
def test_the_sql_written_out_for_another_dialect_is_checked_again(tmp_path: Path, call: str, written: str) -> None:
    from test_adversarial import FCT, project

    pg_engine = ("name: shop\ndialect: duckdb\nengine: {type: postgres, url_env: WAREHOUSE_URL}\n"
                 "state: .backfill/state.db\nparams: {source_dir: data, region: north}\n")
    root = project(tmp_path, {"project.yaml": pg_engine, "sql/fct_order.sql": FCT.format(call)})
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    result = cli(root, "validate")
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [
        f"error: sql/fct_order.sql:1:1: the SQL written out for postgres is refused: function '{written.lower()}' "
        "is not allowed in templates (it is not on the postgres allow-list); if it is harmless, add it to "
        "allow_functions in project.yaml (table fct_order, 2026-07-01)"], result.stderr
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before

    # what the translation spells differently but harmlessly passes: strftime is written out as TO_CHAR
    ok = project(tmp_path / "ok", {"project.yaml": pg_engine,
                                   "sql/fct_order.sql": FCT.format("strftime(DATE '{{ ds }}', '%Y')")})
    validated = cli(ok, "validate")
    assert validated.exit_code == 0, validated.output


RANGE_SRC = """name: src
kind: integration
granularity: day
partition: ds
primary_key: [k]
fields:
  - {{name: k, type: BIGINT}}
  - {{name: v, type: BIGINT}}
  - {{name: loaded_for, type: VARCHAR}}
batch_size: 3
sql_inline: |
  SELECT k, v, {loaded_for} AS loaded_for, day AS ds
  FROM read_csv({{{{ source('data/src.csv') }}}}, header = true, auto_detect = false,
                columns = {{'day': 'DATE', 'k': 'BIGINT', 'v': 'BIGINT'}})
  WHERE day BETWEEN DATE '{{{{ start_ds }}}}' AND DATE '{{{{ end_ds }}}}'
"""


@pytest.mark.parametrize(("loaded_for", "at", "what"), [
    ("'{{ ds }}'", "12:20", "`ds`"),
    ("'{{ ds_add(ds, -1) }}'", "12:27", "`ds`"),
    ("'{{ bizdate }}'", "12:20", "`bizdate`"),
    ("'${yyyymmdd}'", "12:17", "the scheduling parameter ${yyyymmdd}"),
])
def test_a_range_template_may_not_use_a_per_partition_date(tmp_path: Path, prefect_api: str,
                                                            loaded_for: str, at: str, what: str) -> None:
    root = tmp_path / "p"
    for sub in ("tables", "backfills", "data"):
        (root / sub).mkdir(parents=True)
    (root / "project.yaml").write_text("name: r\ndialect: duckdb\nengine: {type: duckdb, path: .backfill/w.duckdb}\n"
                                       "state: .backfill/state.db\n")
    (root / "data" / "src.csv").write_text("day,k,v\n2026-07-01,1,10\n2026-07-02,1,20\n2026-07-03,1,30\n")
    (root / "backfills" / "b.yaml").write_text("name: b\ntargets: [{table: src}]\n"
                                               "data_timestamp: {start: 2026-07-01, end: 2026-07-03}\n")
    (root / "tables" / "src.yaml").write_text(RANGE_SRC.format(loaded_for=loaded_for))
    for command in ("validate", "apply"):
        result = cli(root, command, *(["--yes"] if command == "apply" else []))
        assert result.exit_code == 1, result.output
        assert [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")] == [
            f"error: tables/src.yaml:{at}: a range template (it uses start_ds/end_ds) writes a whole batch in one "
            f"statement, where {what} would be the batch's first date for every partition; use start_ds and end_ds "
            "(or start_ts and end_ts) only (table src)"], result.stderr
    assert not (root / ".backfill").exists()

    # the batch's own bounds are fine, and each partition holds its own rows
    (root / "tables" / "src.yaml").write_text(RANGE_SRC.format(loaded_for="CAST(day AS VARCHAR)"))
    applied = cli(root, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    import duckdb

    con = duckdb.connect(str(root / ".backfill" / "w.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT CAST(ds AS VARCHAR), loaded_for, v FROM src ORDER BY ds").fetchall()
    finally:
        con.close()
    assert rows == [("2026-07-01", "2026-07-01", 10), ("2026-07-02", "2026-07-02", 20),
                    ("2026-07-03", "2026-07-03", 30)]


def _window_project(root: Path) -> Path:
    """src (a day of a CSV) -> win (a 3-day trailing sum of src), one backfill b1 over 5 days."""
    for sub in ("tables", "backfills", "data"):
        (root / sub).mkdir(parents=True)
    (root / "project.yaml").write_text("name: w\ndialect: duckdb\nengine: {type: duckdb, path: .backfill/w.duckdb}\n"
                                       "state: .backfill/state.db\nmax_parallel: 4\n")
    (root / "data" / "src.csv").write_text("day,k,v\n" + "".join(f"2026-07-0{d},1,{d}\n" for d in range(1, 6)))
    table = ("name: {name}\nkind: {kind}\ngranularity: day\npartition: ds\nprimary_key: [k]\nfields:\n"
             "  - {{name: k, type: BIGINT}}\n  - {{name: v, type: BIGINT}}\nsql_inline: |\n  {sql}\n")
    (root / "tables" / "src.yaml").write_text(table.format(name="src", kind="integration", sql=(
        "SELECT k, v FROM read_csv({{ source('data/src.csv') }}, header = true, auto_detect = false, "
        "columns = {'day': 'DATE', 'k': 'BIGINT', 'v': 'BIGINT'}) WHERE day = DATE '{{ ds }}'")))
    (root / "tables" / "win.yaml").write_text(table.format(name="win", kind="aggregate", sql=(
        "SELECT k, SUM(v) AS v FROM {{ ref('src') }} WHERE ds BETWEEN DATE '{{ ds_add(ds, -2) }}' "
        "AND DATE '{{ ds }}' GROUP BY k")))
    (root / "backfills" / "b1.yaml").write_text("name: b1\ntargets: [{table: src}]\nscope: downstream\n"
                                                "data_timestamp: {start: 2026-07-01, end: 2026-07-05}\n")
    return root


def test_rerun_downstream_follows_reads_recorded_by_a_later_apply(tmp_path: Path, prefect_api: str) -> None:
    import duckdb

    root = _window_project(tmp_path / "p")
    assert cli(root, "apply", "--yes").exit_code == 0
    win = root / "tables" / "win.yaml"  # a template edit: the next apply records win again, src is done
    win.write_text(win.read_text().replace("SUM(v) AS v", "SUM(v) + 0 AS v"))
    assert cli(root, "apply", "--yes").exit_code == 0
    csv = root / "data" / "src.csv"
    csv.write_text(csv.read_text().replace("2026-07-03,1,3\n", "2026-07-03,1,300\n"))
    rerun = cli(root, "rerun", "b1", "--instance", "b1/src/2026-07-03", "--downstream")
    assert rerun.exit_code == 0, rerun.output
    assert rerun.stdout.splitlines()[0] == "rerunning 4 instance(s) of b1"  # src 07-03, win 07-03..07-05
    con = duckdb.connect(str(root / ".backfill" / "w.duckdb"), read_only=True)
    try:
        got = dict(con.execute("SELECT CAST(ds AS VARCHAR), v FROM win").fetchall())
    finally:
        con.close()
    source = {1: 1, 2: 2, 3: 300, 4: 4, 5: 5}  # the oracle: the CSV as it is now
    assert got == {f"2026-07-0{d}": sum(source.get(d - i, 0) for i in range(3)) for d in range(1, 6)}
    # the readers waited for the partition they read: their upstream now names it
    con2 = sqlite3.connect(root / ".backfill" / "state.db")
    try:
        ups = dict(con2.execute("SELECT id, upstream FROM bf_instances WHERE table_name = 'win'").fetchall())
    finally:
        con2.close()
    assert all("b1/src/2026-07-03" in ups[f"b1/win/2026-07-0{d}"] for d in (3, 4, 5)), ups


def test_a_rerun_that_breaks_a_dead_apply_lock_settles_what_that_apply_left_running(
        tmp_path: Path, prefect_api: str) -> None:
    import signal

    from test_monitoring import BACKFILL, wait_for

    slow = ("SELECT 1 AS id, 1 AS v{% if ds == '2026-01-02' %} WHERE (SELECT sum(hash(r.range)) "
            "FROM range(20000000000) AS r) IS NOT NULL{% endif %}")
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\n"
                                 "data_timestamp: [2026-01-01, 2026-01-02]\n", a_sql=slow)
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(p)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(p, lambda s: s.get("bf/a/2026-01-02") == "running" and s.get("bf/a/2026-01-01") == "success",
                 "bf/a/2026-01-02 running", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert statuses(p)["bf/a/2026-01-02"] == "running"  # what the dead apply left
    rerun = cli(p, "rerun", "bf", "--instance", "bf/a/2026-01-01")
    assert rerun.exit_code == 0, rerun.output
    assert f"note: broke the lock of pid {proc.pid}" in rerun.stderr and "recovering its instances" in rerun.stderr
    assert statuses(p) == {"bf/a/2026-01-01": "success", "bf/a/2026-01-02": "pending"}  # its write never committed
    why = cli(p, "why", "bf/a/2026-01-02")
    assert "`backfill apply` runs it" in why.stdout, why.output


def test_a_reader_of_a_partition_whose_instance_failed_elsewhere_is_blocked_not_called_current(
        tmp_path: Path, prefect_api: str) -> None:
    bad_a = "SELECT 1 AS id, {% if ds == '2026-01-02' %}CAST('x' AS INTEGER){% else %}1{% endif %} AS v"
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\ngroups: 2\n"
                                 "data_timestamp: {start: 2026-01-01, end: 2026-01-02}\n", a_sql=bad_a)
    (p / "backfills" / "bfb.yaml").write_text("name: bfb\ntargets: [{table: b}]\n"
                                              "data_timestamp: {start: 2026-01-01, end: 2026-01-02}\n")
    assert cli(p, "apply", "bf", "--yes").exit_code == 1  # a 2026-01-02 fails: no partition
    planned = cli(p, "plan", "bfb")
    assert planned.exit_code == 0, planned.output
    assert ("warning: a 2026-01-02: not in the ledger; bf/a/2026-01-02 did not succeed, so its readers are "
            "blocked until it does (read by bfb/b/2026-01-02)") in planned.output
    applied = cli(p, "apply", "bfb", "--yes")
    assert applied.exit_code == 1, applied.output
    assert "blocked  bfb/b/2026-01-02: upstream bf/a/2026-01-02 failed" in applied.stdout
    assert statuses(p)["bfb/b/2026-01-02"] == "blocked" and statuses(p)["bfb/b/2026-01-01"] == "success"
    status = json.loads(cli(p, "status", "b", "--json").stdout)["tables"][0]["dates"]
    assert status == {"2026-01-01": "current", "2026-01-02": "missing"}

    # once a is fixed and written, the next apply runs the reader from it
    spec = p / "tables" / "a.yaml"
    spec.write_text(spec.read_text().replace("CAST('x' AS INTEGER)", "2"))
    again = cli(p, "apply", "--yes")
    assert again.exit_code == 0, again.output
    import duckdb

    con = duckdb.connect(str(p / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        b = dict(con.execute("SELECT CAST(ds AS VARCHAR), v FROM b").fetchall())
    finally:
        con.close()
    assert b == {"2026-01-01": 2, "2026-01-02": 3}  # a's v + 1, from a as it is now


def test_apply_runs_an_instance_whose_last_run_was_killed_over_its_earlier_partition(
        tmp_path: Path, prefect_api: str) -> None:
    from test_monitoring import BACKFILL, wait_for

    slow = "SELECT 1 AS id, 1 AS v WHERE (SELECT sum(hash(r.range)) FROM range(20000000000) AS r) IS NOT NULL"
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\ndata_timestamp: [2026-01-01]\n")
    assert cli(p, "apply", "--yes").exit_code == 0
    assert statuses(p) == {"bf/a/2026-01-01": "success"}
    spec = p / "tables" / "a.yaml"
    fast = spec.read_text()
    spec.write_text(fast.replace("SELECT 1 AS id, 1 AS v", slow))
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(p)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(p, lambda s: s.get("bf/a/2026-01-01") == "running", "a running", proc)
        assert cli(p, "kill", "bf").exit_code == 0
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    spec.write_text(fast)  # back to the SQL its partition was written with: the partition is current again
    assert statuses(p) == {"bf/a/2026-01-01": "killed"}
    planned = cli(p, "plan")
    assert "Plan: 0 new, 0 stale, 1 failed, 0 done." in planned.stdout, planned.output
    again = cli(p, "apply", "--yes")
    assert again.exit_code == 0, again.output
    assert "Nothing to do" not in again.stdout
    assert statuses(p) == {"bf/a/2026-01-01": "success"}


def test_why_keeps_the_instance_ids_of_the_commands_it_suggests_whole() -> None:
    from backfill.cli.why import render
    from backfill.plan.why import Diagnosis, Wait

    d = Diagnosis(id="bf/a/2026-01-01", backfill="bf", status="waiting", group=1, mode="run", held=True,
                  summary="waiting: paused by an operator; `backfill resume bf/a/2026-01-01` releases it",
                  reads=[], waits=[Wait("pause", "an operator's pause: `backfill resume bf/a/2026-01-01` "
                                                 "releases it; then bf/b/2026-01-01 runs")],
                  chain=[], stale=[], last_attempt=None, log="backfill logs bf/a/2026-01-01")
    text = "\n".join(render(d, 200))
    assert "bf/a/2026-01-01: waiting: paused by an operator; `backfill resume bf/a/2026-01-01` releases it" in text
    # outside the command the backfill's own prefix is left out, as before
    assert "  pause: an operator's pause: `backfill resume bf/a/2026-01-01` releases it; then b/2026-01-01 runs" \
        in text


def test_show_of_an_hourly_table_shows_the_hour_asked_for_or_a_whole_day(tmp_path: Path, prefect_api: str) -> None:
    root = tmp_path / "h"
    for sub in ("tables", "backfills"):
        (root / sub).mkdir(parents=True)
    (root / "project.yaml").write_text("name: h\ndialect: duckdb\nengine: {type: duckdb, path: .backfill/w.duckdb}\n"
                                       "state: .backfill/state.db\n")
    (root / "tables" / "h.yaml").write_text("name: h\nkind: fact\ngranularity: hour\nprimary_key: [id]\n"
                                            "fields: [{name: id, type: BIGINT}, {name: hr, type: VARCHAR}]\n"
                                            "sql_inline: \"SELECT 1 AS id, '{{ hour }}' AS hr\"\n")
    (root / "backfills" / "hb.yaml").write_text("name: hb\ntargets: [{table: h}]\n"
                                                "data_timestamp: {start: 2026-07-01T00, end: 2026-07-01T03}\n")
    assert cli(root, "apply", "--yes").exit_code == 0

    def shown(*args: str) -> tuple[str, int, list[str]]:
        result = cli(root, "show", "h", *args, "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        return doc["ds"], doc["rows"], sorted(r["hr"] for r in doc["sample"])

    assert shown("--date", "2026-07-01T02") == ("2026-07-01T02", 1, ["02"])
    assert shown() == ("2026-07-01T03", 1, ["03"])  # the latest partition: an hour
    assert shown("--date", "2026-07-01") == ("2026-07-01", 4, ["00", "01", "02", "03"])  # a day: its hours


@pytest.mark.parametrize(("verb", "status"), [("kill", "killed"), ("pause", "paused")])
def test_kill_or_pause_of_a_backfill_no_running_apply_runs_takes_effect_at_once(
        tmp_path: Path, prefect_api: str, verb: str, status: str) -> None:
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\ndata_timestamp: [2026-01-01, 2026-01-02]\n"
                                 "runtime: 2099-01-01T00:00:00\n")
    assert cli(p, "apply", "--yes").exit_code == 0
    assert set(statuses(p).values()) == {"waiting"}  # for their runtime
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _held_by(p, holder)  # an apply of other backfills runs: it does not run bf before its time
        done = cli(p, verb, "bf")
    finally:
        holder.kill()
        holder.wait()
    assert done.exit_code == 0, done.output
    assert done.stdout == f"{verb}: 2 instance(s) of bf; done\n"
    assert set(statuses(p).values()) == {status}


def test_two_backfills_writing_the_same_partition_do_not_block_each_other_forever(
        tmp_path: Path, prefect_api: str) -> None:
    import duckdb

    root = _window_project(tmp_path / "p")  # src from the CSV (v = day number)
    (root / "tables" / "win.yaml").unlink()
    table = ("name: {name}\nkind: aggregate\ngranularity: day\npartition: ds\nprimary_key: [k]\nfields:\n"
             "  - {{name: k, type: BIGINT}}\n  - {{name: v, type: BIGINT}}\nsql_inline: |\n  {sql}\n")
    (root / "tables" / "cum.yaml").write_text(table.format(name="cum", sql=(  # a running total: reads its previous day
        "SELECT s.k, s.v + COALESCE(c.v, 0) AS v FROM {{ ref('src') }} AS s LEFT JOIN {{ ref('cum') }} AS c "
        "ON c.k = s.k AND c.ds = DATE '{{ ds_add(ds, -1) }}' WHERE s.ds = DATE '{{ ds }}'")))
    (root / "tables" / "top.yaml").write_text(table.format(name="top", sql=(
        "SELECT k, v * 10 AS v FROM {{ ref('cum') }} WHERE ds = DATE '{{ ds }}'")))
    (root / "backfills" / "b1.yaml").write_text("name: a\ntargets: [{table: src}]\nscope: downstream\n"
                                                "data_timestamp: {start: 2026-07-01, end: 2026-07-03}\n"
                                                "order: descending\n")
    (root / "backfills" / "b2.yaml").write_text("name: b\ntargets: [{table: src}]\nscope: downstream\n"
                                                "data_timestamp: {start: 2026-07-03, end: 2026-07-05}\n")
    applied = cli(root, "apply", "--yes")  # both write src, cum and top of 2026-07-03
    assert applied.exit_code == 0, applied.output
    con = duckdb.connect(str(root / ".backfill" / "w.duckdb"), read_only=True)
    try:
        got = {t: dict(con.execute(f"SELECT CAST(ds AS VARCHAR), v FROM {t}").fetchall()) for t in ("cum", "top")}
    finally:
        con.close()
    running = [sum(range(1, d + 1)) for d in range(1, 6)]  # the oracle: 1, 3, 6, 10, 15
    assert got["cum"] == {f"2026-07-0{d}": running[d - 1] for d in range(1, 6)}
    assert got["top"] == {f"2026-07-0{d}": 10 * running[d - 1] for d in range(1, 6)}
    status = json.loads(cli(root, "status", "--json").stdout)
    assert {d for t in status["tables"] for d in t["dates"].values()} == {"current"}
    assert "Apply would run 0 instance(s)." in cli(root, "plan").stdout


def test_unlock_json(tmp_path: Path) -> None:
    from backfill.state.ledger import Ledger

    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\ndata_timestamp: [2026-01-01]\n")
    (p / ".backfill").mkdir()
    Ledger.open(f"sqlite:///{p / '.backfill' / 'state.db'}").close()
    assert json.loads(cli(p, "unlock", "--json").stdout) == {"ok": True, "locked": False, "broke": None}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _held_by(p, dead)
    asked = cli(p, "unlock", "--json")
    assert asked.exit_code == 1
    doc = json.loads(asked.stdout)
    assert doc["ok"] is False and "only with --yes" in json.dumps(doc)
    broke = cli(p, "unlock", "--json", "--yes")
    assert broke.exit_code == 0, broke.output
    assert json.loads(broke.stdout) == {"ok": True, "locked": False,
                                        "broke": {"pid": dead.pid, "host": socket.gethostname(), "purpose": "apply"}}


def test_a_plan_file_that_is_json_but_not_a_plan_is_one_error(tmp_path: Path) -> None:
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\ndata_timestamp: [2026-01-01]\n")
    for text in ("[1, 2]", "3", "null", '"x"'):
        plan = tmp_path / "plan.json"
        plan.write_text(text)
        result = cli(p, "apply", "--yes", str(plan))
        assert result.exit_code == 1, result.output
        assert result.stderr == f"error: {plan}: not a saved plan; make one with `backfill plan --out FILE`\n"
        assert not (p / ".backfill").exists()


def test_a_first_apply_refused_for_a_table_never_built_leaves_nothing_behind(tmp_path: Path, prefect_api: str) -> None:
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: b}]\ndata_timestamp: [2026-01-01]\n")
    result = cli(p, "apply", "--yes")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: backfills/bf.yaml: b reads a 2026-01-01, which "
                                                              "was never built")
    assert not (p / ".backfill").exists()


ONE_LINE = ("SELECT f.customer_id, COUNT(f.order_id) AS order_cnt, SUM(f.amount) AS amount_sum "
            "FROM {{ ref('fct_order') }} AS f WHERE f.ds = DATE '{{ ds }}' GROUP BY f.customer_idx")


@pytest.mark.parametrize(("value", "at"), [
    ("|\n  " + ONE_LINE.replace(" FROM", "\n  FROM"), None),  # a literal block: line for line
    (ONE_LINE, None),  # plain, on the key's line
    ('"' + ONE_LINE + '"', None),  # quoted: its text starts a column later
    (">\n  " + ONE_LINE.replace(" FROM", "\n  FROM"), "8:13"),  # folded: its text is not the file's: its start
])
def test_sql_inline_errors_point_into_the_file_whatever_the_yaml_style(tmp_path: Path, value: str,
                                                                       at: str | None) -> None:
    from test_adversarial import project

    spec = (Path(__file__).parent / "fixtures" / "base" / "tables" / "dws_customer.yaml").read_text()
    spec = spec[:spec.index("sql_inline:")] + "sql_inline: " + value + "\n"
    root = project(tmp_path, {"tables/dws_customer.yaml": spec})
    if at is None:  # where the unknown column's name stands in the file
        lines = spec.splitlines()
        n = next(n for n, text in enumerate(lines, start=1) if "f.customer_idx" in text)
        at = f"{n}:{lines[n - 1].index('f.customer_idx') + len('f.') + 1}"
    result = cli(root, "validate")
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: tables/dws_customer.yaml:{at}: unknown column 'f.customer_idx': table 'fct_order' "
                      "has no field 'customer_idx'; did you mean 'customer_id'? (table dws_customer, 2026-07-01)"]


SANDBOX_PROBES = {
    "cte_out_of_scope": ("(WITH duckdb_tables AS (SELECT 1 AS x) SELECT x FROM duckdb_tables) AS z "
                         "CROSS JOIN duckdb_tables", "2:12",  # named where the template first names it
                         "unknown table 'duckdb_tables': declare it in tables/ or fix the name"),
    "schema_qualified": ("main.ods_customer", "2:11",
                         "'main.ods_customer' names a schema or catalog: a template reads declared tables only, "
                         "through {{ ref('table') }}"),
    "no_break_space": ("read_csv({{ source('data/orders.csv') }},\u00a0header = true)", "2:47",
                       "the SQL holds the character U+00A0, which the engine may read otherwise than this check "
                       "does; write a plain space (or, inside a text, CHR())"),
    "nested_too_deep": ("(SELECT " + "(" * 3000 + "1" + ")" * 3000 + " AS x) AS t", "1:1",
                        "the SQL nests too deeply to be checked; flatten its parentheses or subqueries"),
}


@pytest.mark.parametrize("case", sorted(SANDBOX_PROBES))
def test_what_a_template_reads_is_judged_as_the_engine_reads_it(tmp_path: Path, case: str) -> None:
    from test_adversarial import ODS, project

    source, at, message = SANDBOX_PROBES[case]
    root = project(tmp_path, {"sql/ods_order.sql": ODS.format(source)})
    result = cli(root, "validate")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: sql/ods_order.sql:{at}: {message} (table ods_order, 2026-07-01)"], result.stderr


def test_a_cte_in_scope_is_read_as_a_cte(tmp_path: Path) -> None:
    from test_adversarial import project

    sql = ("WITH src AS (SELECT order_id, customer_id, amount, order_time\n"
           "  FROM read_csv({{ source('data/orders.csv') }}, header = true))\n"
           "SELECT order_id, customer_id, amount FROM (SELECT * FROM src) AS s\n"
           "WHERE CAST(order_time AS DATE) = DATE '{{ ds }}'\n")
    result = cli(project(tmp_path, {"sql/ods_order.sql": sql}), "validate")
    assert result.exit_code == 0, result.output
