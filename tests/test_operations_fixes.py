"""Operations that must refuse what they cannot do truthfully, and read-outs that must say what is so:
set-success on a success or a backfill name, resume of a scheduled backfill, `why`/`logs` of a dry-run
instance, `instances --date` of a day that does not exist, a backfill recorded without instances.

A three-table project a -> b -> c (daily, inline SQL), real DuckDB file, real SQLite ledger."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from steering import cli, statuses
from typer.testing import Result

from backfill.state.ledger import Ledger

SQL = {"a": "SELECT 1 AS id, 1 AS v",
       "b": "SELECT id, v + 1 AS v FROM {{ ref('a') }} WHERE ds = DATE '{{ ds }}'",
       "c": "SELECT id, v * 10 AS v FROM {{ ref('b') }} WHERE ds = DATE '{{ ds }}'"}
BF = "name: bf\ntargets: [{table: a}]\nscope: downstream\ndata_timestamp: {start: 2026-01-01, end: 2026-01-02}\n"


def mini(root: Path, extra: str = "") -> Path:
    """The project; `extra`: more lines of backfill bf."""
    project = root / "mini"
    (project / "tables").mkdir(parents=True)
    (project / "backfills").mkdir()
    (project / "project.yaml").write_text(
        "name: mini\ndialect: duckdb\nengine: {type: duckdb, path: .backfill/warehouse.duckdb}\n"
        "state: .backfill/state.db\nmax_parallel: 2\n")
    for name, sql in SQL.items():
        (project / "tables" / f"{name}.yaml").write_text(
            f"name: {name}\nkind: dimension\ngranularity: day\npartition: ds\nprimary_key: [id]\nfields:\n"
            f"  - {{name: id, type: BIGINT}}\n  - {{name: v, type: INTEGER}}\nsql_inline: \"{sql}\"\n")
    (project / "backfills" / "bf.yaml").write_text(BF + extra)
    return project


def ledger_sha(project: Path) -> str:
    """The ledger's content (a dump: the file's bytes also move when SQLite checkpoints its journal)."""
    con = sqlite3.connect(f"file:{project / '.backfill' / 'state.db'}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


def one_error(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {message}\n"


def applied(project: Path, *args: str) -> None:
    result = cli(project, "apply", "--yes", *args)
    assert result.exit_code == 0, result.output


def attempts_of(project: Path, iid: str) -> list[dict[str, object]]:
    ledger = Ledger.open(f"sqlite:///{project / '.backfill' / 'state.db'}")
    try:
        return ledger.attempts(iid)
    finally:
        ledger.close()


def why_summary(project: Path, iid: str) -> str:
    result = cli(project, "why", iid, "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["summary"])


def test_set_success_refuses_an_instance_that_already_succeeded(tmp_path: Path, prefect_api: str) -> None:
    project = mini(tmp_path)
    (project / "backfills" / "dr.yaml").write_text(
        "name: dr\ntargets: [{table: a}]\ndata_timestamp: [2026-02-01]\ndry_run: [a]\n")
    applied(project)
    before, sha = statuses(project), ledger_sha(project)
    one_error(cli(project, "set-success", "bf/a/2026-01-01"),
              "bf/a/2026-01-01 already succeeded; nothing to set (rerun it with "
              "`backfill rerun bf --instance bf/a/2026-01-01` to recompute it)")
    assert ledger_sha(project) == sha and statuses(project) == before
    assert why_summary(project, "bf/b/2026-01-01") == "success, current"  # its downstream stays current
    assert "0 stale" in cli(project, "plan").stdout

    # a dry-run instance wrote nothing: setting it successful is an operator's statement, accepted once
    assert before["dr/a/2026-02-01"] == "dry_run"
    assert cli(project, "set-success", "dr/a/2026-02-01").exit_code == 0
    assert statuses(project)["dr/a/2026-02-01"] == "success"
    sha = ledger_sha(project)
    one_error(cli(project, "set-success", "dr/a/2026-02-01"),
              "dr/a/2026-02-01 was already set to success by an operator; nothing to set (rerun it with "
              "`backfill rerun dr --instance dr/a/2026-02-01` to recompute it)")
    assert ledger_sha(project) == sha


def test_set_success_takes_an_instance_id_never_a_backfill_name(tmp_path: Path, prefect_api: str) -> None:
    project = mini(tmp_path)
    (project / "backfills" / "one.yaml").write_text("name: one\ntargets: [{table: a}]\ndata_timestamp: [2026-03-01]\n")
    applied(project, "one")
    assert statuses(project) == {"one/a/2026-03-01": "success"}
    (project / "backfills" / "bf.yaml").write_text(BF + "dry_run: [a, b, c]\n")
    applied(project, "bf")
    before, sha = statuses(project), ledger_sha(project)
    for name in ("one", "bf"):  # one instance or six: the same refusal
        one_error(cli(project, "set-success", name), "set-success takes one instance id BACKFILL/TABLE/DS")
    assert ledger_sha(project) == sha and statuses(project) == before


def test_resume_of_a_scheduled_backfill_waits_for_its_runtime(tmp_path: Path, prefect_api: str) -> None:
    project = mini(tmp_path, "runtime: 2099-01-01T00:00:00\n")
    applied(project)
    assert set(statuses(project).values()) == {"waiting"}
    paused = cli(project, "pause", "bf")
    assert paused.exit_code == 0, paused.output
    assert set(statuses(project).values()) == {"paused"}
    resumed = cli(project, "resume", "bf")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == "resumed 6 instance(s) of bf; they wait for their scheduled time 2099-01-01T00:00:00\n"
    assert set(statuses(project).values()) == {"waiting"}
    assert all(not attempts_of(project, i) for i in statuses(project))  # nothing ran
    summary = why_summary(project, "bf/a/2026-01-01")
    assert summary.startswith("waiting: for its scheduled time 2099-01-01T00:00:00;"), summary
    ledger = Ledger.open(f"sqlite:///{project / '.backfill' / 'state.db'}")
    try:
        assert ledger.partition_states() == []  # no partition written
    finally:
        ledger.close()
    # a single instance too, and its JSON says what waits
    assert cli(project, "pause", "bf/c/2026-01-02").exit_code == 0
    doc = json.loads(cli(project, "resume", "bf/c/2026-01-02", "--json").stdout)
    assert doc == {"ok": True, "released": 1, "ran": [], "waiting": ["bf/c/2026-01-02"],
                   "scheduled_for": "2099-01-01T00:00:00", "apply_running": False}
    assert set(statuses(project).values()) == {"waiting"}


def test_why_and_logs_of_a_dry_run_instance_say_what_the_partition_holds(tmp_path: Path, prefect_api: str) -> None:
    project = mini(tmp_path)
    applied(project)  # a written by "1 AS v"
    spec = project / "tables" / "a.yaml"
    spec.write_text(spec.read_text().replace("SELECT 1 AS id, 1 AS v", "SELECT 1 AS id, 2 AS v"))
    (project / "backfills" / "bf.yaml").write_text(BF + "dry_run: [a]\n")
    applied(project)
    assert statuses(project)["bf/a/2026-01-01"] == "dry_run"
    assert why_summary(project, "bf/a/2026-01-01") == (
        "dry_run: not executed; the partition holds data from an earlier write (stale: its table's spec "
        "changed since)")
    logs = cli(project, "logs", "bf/a/2026-01-01")
    assert logs.exit_code == 0, logs.output
    text = logs.stdout
    assert text.startswith("bf/a/2026-01-01: dry_run\n--- attempt 1: success,")
    assert text.endswith("--- SQL executed by attempt 1\nSELECT 1 AS id, 1 AS v\n"
                         "--- SQL (as last planned; not what attempt 1 executed, shown above)\n"
                         "SELECT 1 AS id, 2 AS v\n")

    fresh = mini(tmp_path / "fresh", "dry_run: [a]\n")  # never written
    applied(fresh)
    assert why_summary(fresh, "bf/a/2026-01-01") == "dry_run: not executed; the partition is missing"
    never = cli(fresh, "logs", "bf/a/2026-01-01").stdout
    assert never == "bf/a/2026-01-01: dry_run\nno attempt yet\n--- SQL (as planned; never executed)\n" \
                    "SELECT 1 AS id, 1 AS v\n"


def test_instances_date_must_name_a_real_day(tmp_path: Path) -> None:
    project = mini(tmp_path)
    usage = cli(project, "instances", "--date", "xx")
    assert usage.exit_code == 2
    for bad in ("2026-13-01", "2026-02-30", "2026-00-10", "2026-01-01T24", "2026-7-02"):
        result = cli(project, "instances", "--date", bad)
        assert result.exit_code == 2, (bad, result.output)
        assert result.output == usage.output.replace("'xx'", f"'{bad}'")
        assert result.output.count("\n") == 1 and "is not a data timestamp" in result.output
    for good in ("2024-02-29", "2026-01-01T23"):  # valid: past validation, to the (missing) ledger
        one_error(cli(project, "instances", "--date", good),
                  "no ledger yet: nothing was applied in this project; run `backfill apply`")


def test_a_backfill_recorded_without_instances_is_not_called_unknown(tmp_path: Path, prefect_api: str) -> None:
    project = mini(tmp_path)
    applied(project)
    (project / "backfills" / "other.yaml").write_text(BF.replace("name: bf", "name: other"))
    applied(project)
    before, sha = statuses(project), ledger_sha(project)
    empty = ("backfill 'other' has no instances in the ledger: every partition it covers was already current "
             "when it was applied, so it ran nothing")
    for verb in ("rerun", "instances", "kill", "pause", "resume"):
        one_error(cli(project, verb, "other"), empty)
    one_error(cli(project, "rerun", "nope"), "no backfill 'nope' in the ledger (known: bf, other)")
    one_error(cli(project, "instances", "nope"), "no backfill 'nope' in the ledger")
    assert ledger_sha(project) == sha and statuses(project) == before
