"""`backfill diff`: plans at two git revisions of the tutorial specs, in a real temporary repository."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tutorial_copy import copy_tutorial
from typer.testing import CliRunner, Result

from backfill.cli.main import _register_optional, app
from backfill.plan.gitdiff import compact_ranges

_register_optional()

TUTORIAL = Path(__file__).resolve().parents[1] / "specs"
JULY_1_14 = [f"2026-07-{d:02d}" for d in range(1, 15)]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True)
    return done.stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "Test")
    copy_tutorial(root / "specs")
    (root / "README.md").write_text("tutorial\n")
    commit(root, "tutorial specs")
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def change_dim_products(repo: Path) -> None:
    edit(repo / "specs/sql/dim_products.sql", "    p.category,", "    TRIM(p.category) AS category,")


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["diff", "--project", str(repo / "specs"), *args])


def run_json(repo: Path, *args: str) -> dict[str, Any]:
    result = run(repo, "--json", *args)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def differences(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, list[str]]]]:
    """backfill -> table -> kind -> dates, for the kinds that are not empty."""
    return {b["name"]: {t["table"]: {k: t[k] for k in ("added", "removed", "changed") if t[k]}
                        for t in b["tables"]}
            for b in doc["backfills"] if b["status"] != "unchanged"}


def test_changed_template_changes_its_instances_and_what_reads_them(repo: Path) -> None:
    change_dim_products(repo)
    commit(repo, "trim categories")
    doc = run_json(repo, "--base", "HEAD~1")
    # dim_products' SQL changed; the fact and aggregate of the same backfill read it, so they change too
    assert differences(doc) == {"tutorial_logical": {"dim_products": {"changed": JULY_1_14},
                                                     "fct_order_buy_di": {"changed": JULY_1_14},
                                                     "dws_all": {"changed": JULY_1_14}}}
    assert doc["summary"] == {"added": 0, "removed": 0, "changed": 42}
    assert doc["base"] == "HEAD~1" and doc["head"] == "WORKTREE"
    statuses = {b["name"]: b["status"] for b in doc["backfills"]}
    assert statuses == {"tutorial_integration": "unchanged", "tutorial_logical": "changed"}

    text = run(repo, "--base", "HEAD~1")
    assert text.exit_code == 0, text.output
    assert "~ backfill tutorial_logical" in text.stdout
    assert "~ dim_products" in text.stdout and "14 changed  2026-07-01..2026-07-14  (sql)" in text.stdout
    assert "14 changed  2026-07-01..2026-07-14  (upstream)" in text.stdout
    assert "tutorial_integration: no changes" in text.stdout
    assert "Diff: 0 added, 0 removed, 42 changed" in text.stdout


def test_markdown_shows_one_sql_diff_per_changed_table(repo: Path) -> None:
    change_dim_products(repo)
    commit(repo, "trim categories")
    result = run(repo, "--base", "HEAD~1", "--format", "markdown")
    assert result.exit_code == 0, result.output
    md = result.stdout
    assert md.startswith("## Backfill diff: `HEAD~1` → working tree")
    assert "**0 added, 0 removed, 42 changed**" in md
    assert "| `dim_products` | 0 | 0 | 14 (sql) | ~ 2026-07-01..2026-07-14 |" in md
    assert "| `fct_order_buy_di` | 0 | 0 | 14 (upstream) | ~ 2026-07-01..2026-07-14 |" in md
    assert "it reads an upstream partition that changes, so it runs again" in md
    assert md.count("<details>") == 1 and md.count("```diff") == 1
    assert "-    p.category," in md and "+    TRIM(p.category) AS category," in md


def test_working_tree_change_is_seen_without_head(repo: Path) -> None:
    change_dim_products(repo)  # not committed
    doc = run_json(repo, "--base", "HEAD")
    assert set(differences(doc)["tutorial_logical"]) == {"dim_products", "fct_order_buy_di", "dws_all"}
    doc = run_json(repo, "--base", "HEAD", "--head", "HEAD")
    assert differences(doc) == {}
    assert doc["head"] == "HEAD"


def test_same_revision_has_no_differences_and_exit_codes(repo: Path) -> None:
    change_dim_products(repo)
    commit(repo, "trim categories")
    same = run(repo, "--base", "HEAD~1", "--head", "HEAD~1", "--exit-code")
    assert same.exit_code == 0, same.output
    assert "No differences" in same.stdout
    assert run_json(repo, "--base", "HEAD~1", "--head", "HEAD~1")["summary"] == {
        "added": 0, "removed": 0, "changed": 0}
    assert run(repo, "--base", "HEAD~1", "--head", "HEAD", "--exit-code").exit_code == 2
    assert run(repo, "--base", "HEAD~1", "--exit-code").exit_code == 2
    assert run(repo, "--base", "HEAD~1").exit_code == 0  # without --exit-code: 0 either way


def test_added_backfill_file_lists_its_instances_as_added(repo: Path) -> None:
    (repo / "specs/backfills/reload.yaml").write_text(
        "name: dws_reload\ntargets:\n  - table: dws_all\n"
        "data_timestamp: [{start: 2026-07-01, end: 2026-07-03}, 2026-07-10]\n")
    commit(repo, "reload dws_all")
    doc = run_json(repo, "--base", "HEAD~1")
    assert differences(doc) == {
        "dws_reload": {"dws_all": {"added": ["2026-07-01", "2026-07-02", "2026-07-03", "2026-07-10"]}}}
    assert {b["name"]: b["status"] for b in doc["backfills"]}["dws_reload"] == "added"
    text = run(repo, "--base", "HEAD~1").stdout
    assert "+ backfill dws_reload" in text and "2026-07-01..2026-07-03, 2026-07-10" in text

    removed = run_json(repo, "--base", "HEAD", "--head", "HEAD~1")
    assert {b["name"]: b["status"] for b in removed["backfills"]}["dws_reload"] == "removed"
    assert removed["summary"] == {"added": 0, "removed": 4, "changed": 0}


def test_widened_data_timestamp_adds_only_the_new_dates(repo: Path) -> None:
    edit(repo / "specs/backfills/logical_tables.yaml", "end: 2026-07-14", "end: 2026-07-16")
    commit(repo, "two more days")
    doc = run_json(repo, "--base", "HEAD~1")
    new = {"added": ["2026-07-15", "2026-07-16"]}
    assert differences(doc) == {"tutorial_logical": {t: new for t in
                                                     ("dim_customer", "dim_products", "fct_order_buy_di",
                                                      "dws_all")}}
    assert doc["summary"] == {"added": 8, "removed": 0, "changed": 0}


def test_changed_settings_and_modes_are_reported(repo: Path) -> None:
    edit(repo / "specs/backfills/logical_tables.yaml", "groups: 3", "groups: 2")
    edit(repo / "specs/backfills/logical_tables.yaml", "dry_run: none", "dry_run: [dws_all]")
    doc = run_json(repo, "--base", "HEAD")
    assert differences(doc) == {"tutorial_logical": {"dws_all": {"changed": JULY_1_14}}}
    logical = next(b for b in doc["backfills"] if b["name"] == "tutorial_logical")
    assert logical["settings"] == {"groups": {"base": 3, "head": 2}}
    text = run(repo, "--base", "HEAD").stdout
    assert "~ groups: 3 -> 2" in text and "(mode)" in text


def test_spec_error_at_base_is_reported_with_its_revision(repo: Path) -> None:
    edit(repo / "specs/backfills/integration.yaml", "groups: 3", "groups: 0")
    commit(repo, "broken")
    edit(repo / "specs/backfills/integration.yaml", "groups: 0", "groups: 3")
    commit(repo, "fixed")
    result = run(repo, "--base", "HEAD~1")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and errors[0].startswith("error: HEAD~1:specs/backfills/integration.yaml:")
    assert "groups" in errors[0]
    assert run(repo, "--base", "HEAD", "--head", "HEAD~1").exit_code == 1


def test_git_problems_are_one_line_errors(repo: Path, tmp_path: Path) -> None:
    unknown = run(repo, "--base", "no-such-branch")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: unknown git revision 'no-such-branch'")
    outside = tmp_path / "outside"
    shutil.copytree(repo / "specs", outside)
    result = CliRunner().invoke(app, ["diff", "--project", str(outside), "--base", "HEAD"])
    assert result.exit_code == 1
    assert "is not inside a git repository" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_project_missing_at_base_means_everything_is_added(repo: Path) -> None:
    shutil.copytree(repo / "specs", repo / "more")
    commit(repo, "a second project")
    doc = CliRunner().invoke(app, ["diff", "--project", str(repo / "more"), "--base", "HEAD~1", "--json"])
    assert doc.exit_code == 0, doc.output
    data = json.loads(doc.stdout)
    assert {b["status"] for b in data["backfills"]} == {"added"}
    assert data["summary"] == {"added": 60 + 56, "removed": 0, "changed": 0}
    gone = CliRunner().invoke(app, ["diff", "--project", str(repo / "more"), "--base", "HEAD",
                                    "--head", "HEAD~1"])
    assert gone.exit_code == 1 and gone.stderr.startswith("error: no project at revision 'HEAD~1'")


def _snapshot(repo: Path) -> dict[str, str]:
    return {p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(repo.rglob("*")) if p.is_file() and ".git/objects" not in p.as_posix()}


def test_diff_leaves_working_tree_and_index_alone(repo: Path) -> None:
    change_dim_products(repo)
    commit(repo, "trim categories")
    edit(repo / "specs/sql/dws_all.sql", "SELECT", "SELECT  ")  # an uncommitted change
    (repo / "specs/backfills/draft.yaml").write_text("name: draft\ntargets: [{table: dim_customer}]\n"
                                                      "data_timestamp: [2026-07-01]\n")  # untracked
    status, before = git(repo, "status", "--porcelain"), _snapshot(repo)
    for args in (("--base", "HEAD~1"), ("--base", "HEAD~1", "--head", "HEAD"), ("--base", "HEAD", "--json")):
        assert run(repo, *args).exit_code == 0
    assert _snapshot(repo) == before
    assert git(repo, "status", "--porcelain") == status


def test_json_is_byte_identical_across_runs(repo: Path) -> None:
    change_dim_products(repo)
    edit(repo / "specs/backfills/integration.yaml", "start: 2026-06-25", "start: 2026-06-20")
    commit(repo, "changes")
    first = run(repo, "--base", "HEAD~1", "--format", "json")
    second = run(repo, "--base", "HEAD~1", "--json")
    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout
    assert json.dumps(json.loads(first.stdout), indent=2, sort_keys=True) + "\n" == first.stdout


def test_compact_ranges() -> None:
    assert compact_ranges([]) == ""
    assert compact_ranges(["2026-07-20", *JULY_1_14]) == "2026-07-01..2026-07-14, 2026-07-20"
    assert compact_ranges(["2026-02-28", "2026-03-01", "2026-03-03"]) == "2026-02-28..2026-03-01, 2026-03-03"
    assert compact_ranges(["2026-07-01T23", "2026-07-02T00", "2026-07-02T02"]) == \
        "2026-07-01T23..2026-07-02T00, 2026-07-02T02"
