"""The command line contract (DESIGN.md): every error is one `error:` line naming file:line:col where
there is one, exit 1 for a user error and 2 for bad usage, never a traceback. One test per fixed bug."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from steering import cli
from typer.testing import CliRunner

from backfill.cli.main import app

_TABLE = """name: {name}
kind: dimension
granularity: day
partition: ds
primary_key: [id]
fields:
  - {{name: id, type: BIGINT}}
  - {{name: v, type: INTEGER}}
sql_inline: "{sql}"
"""


def _project(root: Path, backfill: str, a_sql: str = "SELECT 1 AS id, 1 AS v") -> Path:
    """A three-table project a -> b -> c (daily, DuckDB, SQLite ledger) with one backfill `bf`."""
    (root / "tables").mkdir(parents=True)
    (root / "backfills").mkdir()
    (root / "project.yaml").write_text("name: mini\ndialect: duckdb\n"
                                       "engine: {type: duckdb, path: .backfill/warehouse.duckdb}\n"
                                       "state: .backfill/state.db\nmax_parallel: 2\n")
    sqls = {"a": a_sql,
            "b": "SELECT id, v + 1 AS v FROM {{ ref('a') }} WHERE ds = DATE '{{ ds }}'",
            "c": "SELECT id, v * 10 AS v FROM {{ ref('b') }} WHERE ds = DATE '{{ ds }}'"}
    for name, sql in sqls.items():
        (root / "tables" / f"{name}.yaml").write_text(_TABLE.format(name=name, sql=sql))
    (root / "backfills" / "bf.yaml").write_text(backfill)
    return root


def _one_error(stderr: str) -> str:
    lines = stderr.splitlines()
    assert "Traceback" not in stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_data_timestamps_before_year_1000_validate_plan_and_apply(tmp_path: Path, prefect_api: str) -> None:
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\nscope: downstream\n"
                                 "data_timestamp: {start: 0001-01-01, end: 0001-01-02}\n")
    validated = cli(p, "validate")
    assert validated.exit_code == 0, validated.output
    assert validated.stdout.startswith("ok: project mini: 3 tables, 1 backfills, 6 instances checked")
    planned = cli(p, "plan", "--json")
    assert planned.exit_code == 0, planned.output
    ids = [i["id"] for b in json.loads(planned.stdout)["backfills"] for i in b["instances"]]
    assert sorted(ids) == sorted(f"bf/{t}/0001-01-0{d}" for t in "abc" for d in (1, 2))
    assert "0001-01-01 .. 0001-01-02" in cli(p, "plan").stdout
    applied = cli(p, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "Traceback" not in applied.output
    assert cli(p, "plan", "--json").exit_code == 0
    doc = json.loads(cli(p, "instances", "--json").stdout)
    statuses = {i["id"]: i["status"] for b in doc["backfills"] for i in b["instances"]}
    assert sorted(statuses) == sorted(ids) and set(statuses.values()) == {"success"}

    # a spec file deleted after an apply: the note names the backfill (no literal `{name}`)
    (p / "backfills" / "bf.yaml").unlink()
    again = cli(p, "apply", "--yes")
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0] == ("note: backfill bf: its spec file is gone from backfills/; its history "
                                            "stays in the ledger (see `backfill instances bf`)")


def test_a_control_character_in_yaml_is_one_error_at_its_line_and_column(tmp_path: Path) -> None:
    p = _project(tmp_path / "p", 'name: bf\ntargets: [{table: a}]\ndata_timestamp: [2026-01-01]\n'
                                 'description: "x\x07"\n')
    result = cli(p, "validate")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: backfills/bf.yaml:4:16: YAML: unacceptable character #x0007 (control characters are not allowed); "
        "remove it",
        "1 error found"]
    doc = json.loads(cli(p, "validate", "--json").stdout)
    assert [(e["line"], e["col"]) for e in doc["errors"]] == [(4, 16)]


@pytest.mark.parametrize(("args", "line"), [
    (("plan", "--format", "xml"),
     "error: invalid value for --format: must be text, json or markdown, not 'xml'; see `backfill plan --help`"),
    (("status", "--from", "2026-13-01"),
     "error: invalid value for --from: give a date as YYYY-MM-DD, not '2026-13-01'; see `backfill status --help`"),
    (("show", "a", "--limit", "0"),
     "error: invalid value for '--limit': Input should be greater than or equal to 1; see `backfill show --help`"),
    (("diff",), "error: missing option '--base'; see `backfill diff --help`"),
    (("show",), "error: missing argument 'table'; see `backfill show --help`"),
    (("plan", "--bogus"), "error: no such option: --bogus (Possible options: --out, --verbose); "
                          "see `backfill plan --help`"),
    (("nosuch",), "error: no such command 'nosuch'; see `backfill --help`"),
    (("instances", "--status", "bogus", "--json"), None),
])
def test_bad_usage_is_one_error_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], line: str | None) -> None:
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\ndata_timestamp: [2026-01-01]\n")
    result = cli(p, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    if line is None:  # the message itself is the instances command's
        got = result.stderr.strip()
        assert got.startswith("error: invalid value for '--status': 'bogus' is not a status")
        assert got.endswith("; see `backfill instances --help`")
    else:
        assert result.stderr == line + "\n"
    assert "Usage:" in cli(p, "plan", "--help").stdout  # --help is unchanged


def test_unlock_on_a_closed_stdin_is_cancelled_like_no(tmp_path: Path) -> None:
    from backfill.state.ledger import Ledger

    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\ndata_timestamp: [2026-01-01]\n")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (p / ".backfill").mkdir()
    Ledger.open(f"sqlite:///{p / '.backfill' / 'state.db'}").close()
    con = sqlite3.connect(p / ".backfill" / "state.db")
    con.execute("INSERT INTO bf_locks (name, pid, host, purpose, acquired_at) VALUES ('apply', ?, ?, 'apply', ?)",
                (proc.pid, socket.gethostname(), time.time()))
    con.commit()
    con.close()
    for stdin in ("", "n\n"):  # closed stdin at the question, and the answer no
        result = CliRunner().invoke(app, ["unlock", "--project", str(p)], input=stdin)
        assert result.exit_code == 1
        assert result.stderr == "error: unlock cancelled\n"
        assert "Aborted" not in result.output
    con = sqlite3.connect(p / ".backfill" / "state.db")
    assert con.execute("SELECT pid FROM bf_locks").fetchall() == [(proc.pid,)]
    con.close()


@pytest.mark.parametrize(("expr", "problem"), [
    ("{{ {}.pop('k') }}", "KeyError: 'k'"),
    ("{{ [].pop() }}", "IndexError: pop from empty list"),
    ("{{ '{0}'.format() }}", "IndexError: tuple index out of range"),
    ("{{ 'a'.encode('rot13') }}", "LookupError: 'rot13' is not a text encoding; use codecs.encode() to "
                                     "handle arbitrary codecs"),
    ("{{ [1]|dictsort }}", "AttributeError: 'list' object has no attribute 'items'"),
    ("{{ 1|xmlattr }}", "AttributeError: 'int' object has no attribute 'items'"),
    ("{{ 'x'|truncate(-1) }}", "AssertionError: expected length >= 3, got -1"),
])
def test_a_python_error_in_a_template_is_one_located_error(tmp_path: Path, expr: str, problem: str) -> None:
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\ndata_timestamp: [2026-01-01]\n")
    (p / "sql").mkdir()
    (p / "sql" / "a.sql").write_text(f"SELECT 1 AS id,\n  1 AS v, {expr} AS x\n")
    table = (p / "tables" / "a.yaml").read_text()
    (p / "tables" / "a.yaml").write_text(table.replace('sql_inline: "SELECT 1 AS id, 1 AS v"', "sql: ../sql/a.sql")
                                         .replace("  - {name: v, type: INTEGER}\n",
                                                  "  - {name: v, type: INTEGER}\n  - {name: x, type: VARCHAR}\n"))
    result = cli(p, "validate")
    assert result.exit_code == 1, result.output
    assert _one_error(result.stderr) == f"error: sql/a.sql:2:11: template: {problem} (table a, 2026-01-01)"
