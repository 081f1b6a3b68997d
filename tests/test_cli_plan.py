"""`backfill plan`: text, JSON and markdown output, saved plans, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tutorial_copy import copy_tutorial
from typer.testing import CliRunner, Result

from backfill.cli.main import _register_optional, app

_register_optional()

TUTORIAL = Path(__file__).resolve().parents[1] / "specs"
BACKFILL = Path(sys.executable).parent / "backfill"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "retail"
    copy_tutorial(root)
    return root


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["plan", "--project", str(project), *args])


def run_process(project: Path, *args: str, seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run([str(BACKFILL), "plan", "--project", str(project), *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_json_plan_is_byte_identical_across_processes(project: Path) -> None:
    one = run_process(project, "--format", "json", seed="1")
    two = run_process(project, "--format", "json", seed="12345")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert one.stdout == two.stdout
    doc = json.loads(one.stdout)
    assert [b["name"] for b in doc["backfills"]] == ["tutorial_integration", "tutorial_logical"]
    assert sum(len(b["instances"]) for b in doc["backfills"]) == 116


def test_json_flag_is_the_json_format(project: Path) -> None:
    a, b = run(project, "--format", "json"), run(project, "--json")
    assert a.exit_code == 0 and b.exit_code == 0
    assert a.stdout == b.stdout
    json.loads(a.stdout)


def test_text_summary_line(project: Path) -> None:
    result = run(project)
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().splitlines()[-1] == \
        "Plan: 116 new, 0 stale, 0 failed, 0 done. Apply would run 116 instance(s)."
    assert "backfill tutorial_integration" in result.stdout


def test_only_the_named_backfills(project: Path) -> None:
    result = run(project, "tutorial_integration")
    assert result.exit_code == 0, result.output
    assert "tutorial_logical" not in result.stdout
    assert "Plan: 60 new, 0 stale, 0 failed, 0 done." in result.stdout
    by_key = run(project, "integration", "--json")
    assert [b["name"] for b in json.loads(by_key.stdout)["backfills"]] == ["tutorial_integration"]
    # the logical tables alone read integration tables nothing has built yet: refused, saying what builds them
    alone = run(project, "tutorial_logical")
    assert alone.exit_code == 1
    assert alone.stderr.splitlines() == [
        "error: backfills/logical_tables.yaml: dim_customer reads ods_customer 2026-07-01..2026-07-14, which was "
        "never built and this plan does not build it; apply backfill tutorial_integration first (it builds "
        "ods_customer)"]


def test_markdown_has_a_table_per_backfill(project: Path) -> None:
    result = run(project, "--format", "markdown")
    assert result.exit_code == 0, result.output
    md = result.stdout
    assert md.count("| table | new | stale | failed | done | dates | notes |") == 2
    assert "### `tutorial_integration`" in md and "### `tutorial_logical`" in md
    assert "| `fct_order_buy_di` | 14 | 0 | 0 | 0 | 2026-07-01 .. 2026-07-14 |  |" in md


def test_verbose_lists_every_instance(project: Path) -> None:
    result = run(project, "-v")
    assert result.exit_code == 0
    assert result.stdout.count("    + tutorial_logical/") == 56


def test_saved_plan(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = run(project, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"saved plan to {out}" in result.stdout
    doc = json.loads(out.read_text())
    assert doc["format"] == "backfill-plan/1"
    assert {"plan_id", "specs_fingerprint", "state_fingerprint", "project"} <= set(doc)
    assert doc["project"] == "retail" and doc["state_fingerprint"] == "empty"
    again = tmp_path / "again.json"
    assert run(project, "--out", str(again), "--json").exit_code == 0
    assert again.read_text() == out.read_text()


def test_plan_does_not_create_a_ledger(project: Path) -> None:
    assert run(project).exit_code == 0
    assert not (project / ".backfill").exists()


def test_a_bad_format_is_refused(project: Path) -> None:
    result = run(project, "--format", "xml")
    assert result.exit_code == 2  # bad command-line usage
    assert result.stderr == ("error: invalid value for --format: must be text, json or markdown, not 'xml'; "
                             "see `backfill plan --help`\n")


def test_an_unknown_backfill_is_an_error(project: Path) -> None:
    result = run(project, "nope")
    assert result.exit_code == 1
    assert "error: no backfill named 'nope'" in result.output


def test_a_spec_error_exits_1_naming_file_line_col(project: Path) -> None:
    sql = project / "sql" / "dim_products.sql"
    sql.write_text(sql.read_text().replace("p.brand,", "p.brandd,"))
    result = run(project)
    assert result.exit_code == 1
    assert "error: sql/dim_products.sql:5:7: unknown column" in result.output
    assert "1 error found" in result.output
    as_json = run(project, "--json")
    assert as_json.exit_code == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False
    (err,) = doc["errors"]
    assert err["file"] == "sql/dim_products.sql" and err["line"] == 5 and err["table"] == "dim_products"


def test_field_selection_and_linked_fields_in_the_plan(project: Path) -> None:
    (project / "backfills" / "amt.yaml").write_text(
        "name: amt\ntargets: [{table: dws_all, fields: [order_amt_1d]}]\ndata_timestamp: 2026-07-03\n")
    result = run(project, "--json")  # with the backfills that build what dws_all reads
    assert result.exit_code == 0, result.output
    (inst,) = next(b for b in json.loads(result.stdout)["backfills"] if b["name"] == "amt")["instances"]
    assert inst["fields"] == ["order_amt_1d"] and inst["linked"] == ["avg_order_amt_1d"]
    assert inst["fingerprint"] != inst["table_fingerprint"]
    text = run(project).stdout
    assert "[fields order_amt_1d; linked avg_order_amt_1d]" in text
