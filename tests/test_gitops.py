"""GitOps end to end: a real temporary git repository around the tutorial, real applies.

Commit specs, apply, change a template and commit, and check that `diff`, `status`, `plan --out`,
`apply PLANFILE`, a deleted spec, the apply lock, `unlock` and the CI workflow in examples/ci/ all
behave as a reviewer relies on. Tests that apply need the session Prefect server (`prefect_api`).
"""

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
from typing import Any

import duckdb
import pytest
import yaml
from steering import open_when_read
from typer.testing import CliRunner, Result

from backfill.cli.main import _register_optional, app

_register_optional()

ROOT = Path(__file__).resolve().parents[1]
BACKFILL = str(Path(sys.executable).parent / "backfill")
WORKFLOW = ROOT / "examples" / "ci" / "backfill.yml"
JULY = [f"2026-07-{d:02d}" for d in range(1, 15)]
LOGICAL_TABLES = ("dim_customer", "dim_products", "fct_order_buy_di", "dws_all")


# --- helpers ----------------------------------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def make_repo(project: Path) -> Path:
    """A git repository whose root holds the project folder (so the project has a path prefix in it)."""
    repo = project.parent
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    (repo / ".gitignore").write_text(f"{project.name}/.backfill/\n{project.name}/data/\n")
    commit(repo, "retail tutorial specs")
    return repo


@pytest.fixture()
def repo(tutorial: Path) -> Path:
    return make_repo(tutorial)


def cli(*args: str, project: Path | None = None, stdin: str | None = None) -> Result:
    argv = [*args, *(["--project", str(project)] if project is not None else [])]
    return CliRunner().invoke(app, argv, input=stdin)


def ok(*args: str, project: Path) -> Result:
    result = cli(*args, project=project)
    assert result.exit_code == 0, f"backfill {' '.join(args)}: {result.output}"
    return result


def refused(*args: str, project: Path) -> str:
    """A one-line `error:` and exit 1; the message."""
    result = cli(*args, project=project)
    assert result.exit_code == 1, f"backfill {' '.join(args)} was not refused: {result.output}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def applied(project: Path, *args: str) -> dict[str, dict[str, int]]:
    """`backfill apply --yes --json [args]` -> backfill -> status counts of what it ran."""
    doc = json.loads(ok("apply", "--yes", "--json", *args, project=project).stdout)
    assert doc["ok"], doc
    return {b["name"]: b["counts"] for b in doc["backfills"] if b["counts"]}


def status_of(project: Path) -> dict[str, dict[str, str]]:
    doc = json.loads(ok("status", "--json", project=project).stdout)
    return {t["table"]: t["dates"] for t in doc["tables"]}


def not_current(project: Path) -> dict[str, dict[str, str]]:
    return {t: {d: s for d, s in dates.items() if s != "current"}
            for t, dates in status_of(project).items() if set(dates.values()) != {"current"}}


def diff_changes(project: Path, base: str) -> dict[str, dict[str, dict[str, list[str]]]]:
    """backfill -> table -> kind -> dates, for what `backfill diff --base BASE` reports."""
    doc = json.loads(ok("diff", "--base", base, "--json", project=project).stdout)
    return {b["name"]: {t["table"]: {k: t[k] for k in ("added", "removed", "changed") if t[k]}
                        for t in b["tables"] if t["added"] or t["removed"] or t["changed"]}
            for b in doc["backfills"] if b["status"] != "unchanged"}


def ledger_query(project: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(project / ".backfill" / "state.db", timeout=30)
    try:
        rows = con.execute(sql).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def attempts_per_instance(project: Path) -> dict[str, int]:
    return dict(ledger_query(project, "SELECT instance_id, count(*) FROM bf_attempts GROUP BY instance_id"))


def writes_per_instance(project: Path) -> dict[str, int]:
    con = duckdb.connect(str(project / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        return dict(con.execute("SELECT split_part(attempt_id, ':', 2), count(*) FROM _backfill_commits "
                                "GROUP BY 1").fetchall())
    finally:
        con.close()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def change_dim_products(project: Path, expr: str = "UPPER(p.category)") -> None:
    edit(project / "sql" / "dim_products.sql", "    p.category,", f"    {expr} AS category,")


def ids(backfill: str, table: str, dates: list[str] = JULY) -> set[str]:
    return {f"{backfill}/{table}/{d}" for d in dates}


def everything(n_integration: int = 60, n_logical: int = 56) -> dict[str, dict[str, int]]:
    return {"tutorial_integration": {"success": n_integration}, "tutorial_logical": {"success": n_logical}}


# --- a template change: diff, status, apply, status -----------------------------------------------

def test_template_change_diff_status_apply_then_deleted_spec(repo: Path, tutorial: Path, prefect_api: str) -> None:
    p = tutorial
    assert applied(p) == everything()
    assert not_current(p) == {}
    again = ok("apply", "--yes", project=p)
    assert "Nothing to do" in again.stdout
    assert applied(p) == {}

    change_dim_products(p)
    commit(repo, "upper-case product categories")
    # the reviewable diff: the 14 dim_products instances (SQL), and what reads them in the same backfill
    affected = ("dim_products", "fct_order_buy_di", "dws_all")
    assert diff_changes(p, "HEAD~1") == {"tutorial_logical": {t: {"changed": JULY} for t in affected}}
    # status (computed with an older SQL): those partitions, and only those
    assert not_current(p) == {"dim_products": {d: "stale" for d in JULY}}
    plan = json.loads(ok("plan", "--json", project=p).stdout)
    stale = {i["id"] for b in plan["backfills"] for i in b["instances"] if i["action"] == "stale"}
    assert stale == set().union(*(ids("tutorial_logical", t) for t in affected))

    before = attempts_per_instance(p)
    assert applied(p) == {"tutorial_logical": {"success": 42}}
    after = attempts_per_instance(p)
    assert {i for i in after if after[i] != before.get(i)} == stale
    assert not_current(p) == {}
    assert applied(p) == {}

    # a deleted backfill spec: apply says so, by name, and the ledger keeps its history
    (p / "backfills" / "integration.yaml").unlink()
    commit(repo, "drop the integration backfill")
    assert diff_changes(p, "HEAD~1")["tutorial_integration"] == {
        t: {"removed": [f"2026-{d}" for d in [*(f"06-{x}" for x in range(25, 31)), *(f"07-{x:02d}" for x in
                                                                                       range(1, 15))]]}
        for t in ("ods_customer", "ods_order", "ods_product")}
    result = ok("apply", "--yes", project=p)
    assert "backfill tutorial_integration: its spec file is gone from backfills/" in result.stdout
    assert "Nothing to do" in result.stdout
    listed = json.loads(ok("instances", "tutorial_integration", "--json", project=p).stdout)
    assert len(listed["backfills"][0]["instances"]) == 60
    assert "tutorial_integration" in ok("instances", "tutorial_integration", project=p).stdout
    # its partitions are still there, and still current
    assert len(status_of(p)["ods_order"]) == 20 and not_current(p) == {}


# --- scope: downstream ------------------------------------------------------------------------------

def test_downstream_scope_reruns_the_changed_table_and_everything_reading_it(
        repo: Path, tutorial: Path, prefect_api: str) -> None:
    p = tutorial
    (p / "backfills" / "logical_tables.yaml").write_text(
        "name: tutorial_logical\n"
        "targets:\n  - table: dim_products\n  - table: dim_customer\n"
        "scope: downstream\n"
        "data_timestamp: {start: 2026-07-01, end: 2026-07-14}\n"
        "groups: 3\n")
    commit(repo, "logical tables as the downstream of the dimensions")
    assert applied(p) == everything()

    change_dim_products(p)
    commit(repo, "upper-case product categories")
    # fct_order_buy_di and dws_all (added by scope: downstream) read dim_products: their SQL is the same
    # but their input changes, so the diff lists them and apply recomputes them after dim_products
    affected = ("dim_products", "fct_order_buy_di", "dws_all")
    assert diff_changes(p, "HEAD~1") == {"tutorial_logical": {t: {"changed": JULY} for t in affected}}
    assert not_current(p) == {"dim_products": {d: "stale" for d in JULY}}
    assert applied(p) == {"tutorial_logical": {"success": 42}}
    assert not_current(p) == {}
    assert applied(p) == {}
    # the fact table now holds the new categories, like the dimension it reads
    con = duckdb.connect(str(p / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        dim = con.execute("SELECT count(*) FROM dim_products WHERE category <> UPPER(category)").fetchone()
        fct = con.execute("SELECT count(*) FROM fct_order_buy_di WHERE category <> UPPER(category)").fetchone()
    finally:
        con.close()
    assert dim == (0,) and fct == (0,)


# --- saved plans --------------------------------------------------------------------------------------

def test_saved_plans_run_exactly_once_and_only_while_specs_and_ledger_are_unchanged(
        repo: Path, tutorial: Path, prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    p = tutorial
    plans = tmp_path_factory.mktemp("plans")
    first = plans / "first.json"
    ok("plan", "--out", str(first), project=p)
    planned = {i["id"] for b in json.loads(first.read_text())["backfills"] for i in b["instances"]}
    assert len(planned) == 116
    assert applied(p, str(first)) == everything()
    assert {r[0] for r in ledger_query(p, "SELECT id FROM bf_instances")} == planned
    # a saved plan applies once
    assert "already applied" in refused("apply", "--yes", str(first), project=p)

    # a plan of one backfill, made after a change, runs exactly that plan
    change_dim_products(p)
    commit(repo, "upper-case product categories")
    logical, everything_plan = plans / "logical.json", plans / "all.json"
    ok("plan", "tutorial_logical", "--out", str(logical), project=p)
    ok("plan", "--out", str(everything_plan), project=p)
    assert applied(p, str(logical)) == {"tutorial_logical": {"success": 42}}  # dim_products + what reads it
    # the other plan was made before that apply changed the ledger
    before = attempts_per_instance(p)
    message = refused("apply", "--yes", str(everything_plan), project=p)
    assert "the ledger changed since this plan was made" in message
    # a plan made before a spec change
    stale_specs = plans / "before-spec-change.json"
    ok("plan", "--out", str(stale_specs), project=p)
    edit(p / "sql" / "dim_customer.sql", "SELECT", "SELECT  -- reformatted\n   ")
    commit(repo, "reformat dim_customer")
    message = refused("apply", "--yes", str(stale_specs), project=p)
    assert "the specs changed since this plan was made" in message and "backfill plan --out" in message
    assert attempts_per_instance(p) == before  # nothing ran for a refused plan
    bogus = plans / "bogus.json"
    bogus.write_text("{}")
    assert "not a saved plan" in refused("apply", "--yes", str(bogus), project=p)


# --- the apply lock -----------------------------------------------------------------------------------

HOLD = ("{% if ds == '2026-07-02' %}\n    AND (SELECT count(*) FROM read_csv({{ source('data/hold.csv') }}, "
        "header = true, auto_detect = false, columns = {'x': 'INTEGER'})) >= 0{% endif %}")


def test_two_concurrent_applies_never_run_anything_twice(repo: Path, tutorial: Path, prefect_api: str) -> None:
    p = tutorial
    # the first apply holds the lock until the test lets it go: one instance reads a FIFO (an empty
    # CSV once written), and the read waits for the test to open and close its write end
    where = "WHERE o.ds = DATE '{{ ds }}'"
    edit(p / "sql" / "fct_order_buy_di.sql", where, where + HOLD)
    edit(p / "project.yaml", "max_parallel: 4", "max_parallel: 1")
    commit(repo, "one instance at a time, one of them held")
    hold = p / "data" / "hold.csv"
    os.mkfifo(hold)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    cmd = [BACKFILL, "apply", "--yes", "--project", str(p)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    writer = open_when_read(hold, first)
    try:
        no_wait = subprocess.Popen([*cmd, "--lock-timeout", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
        no_wait.wait(timeout=300)
        waits = subprocess.Popen([*cmd, "--lock-timeout", "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env)
        assert waits.stderr is not None
        asked = waits.stderr.readline()  # it asks for the lock while the first holds it
        os.write(writer, b"x\n")
    finally:
        os.close(writer)
    out_no_wait, err_no_wait = no_wait.communicate(timeout=300)
    out_first, err_first = first.communicate(timeout=600)
    out_waits, err_waits = waits.communicate(timeout=600)
    err_waits = asked + err_waits

    assert first.returncode == 0, (out_first, err_first)
    assert "tutorial_logical: 56 success" in out_first
    assert no_wait.returncode == 1, (out_no_wait, err_no_wait)
    assert err_no_wait.strip().splitlines()[-1].startswith("error: another apply holds the ledger lock: pid "
                                                           f"{first.pid}")
    assert waits.returncode == 0, (out_waits, err_waits)
    assert "waiting for the ledger lock" in err_waits
    assert "Nothing to do" in out_waits
    # nothing ran twice: one attempt and one committed write per instance
    attempts = attempts_per_instance(p)
    assert len(attempts) == 116 and set(attempts.values()) == {1}
    writes = writes_per_instance(p)
    assert writes == attempts
    assert ledger_query(p, "SELECT count(*) FROM bf_locks") == [(0,)]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _lock(project: Path, pid: int) -> None:
    from backfill.state.ledger import Ledger

    (project / ".backfill").mkdir(exist_ok=True)
    Ledger.open(f"sqlite:///{project / '.backfill' / 'state.db'}").close()
    con = sqlite3.connect(project / ".backfill" / "state.db")
    con.execute("INSERT INTO bf_locks (name, pid, host, purpose, acquired_at) VALUES ('apply', ?, ?, 'apply', ?)",
                (pid, socket.gethostname(), time.time()))
    con.commit()
    con.close()


def test_unlock_breaks_a_dead_holders_lock_after_confirmation_and_refuses_a_live_one(tutorial: Path) -> None:
    p = tutorial
    dead = _dead_pid()
    _lock(p, dead)
    no = cli("unlock", project=p, stdin="n\n")
    assert no.exit_code == 1 and f"pid {dead}" in no.stdout and "error: unlock cancelled" in no.stderr
    assert ledger_query(p, "SELECT pid FROM bf_locks") == [(dead,)]
    yes = cli("unlock", project=p, stdin="y\n")
    assert yes.exit_code == 0, yes.output
    assert "broke the lock" in yes.stdout and ledger_query(p, "SELECT pid FROM bf_locks") == []

    _lock(p, dead)
    assert "broke the lock" in ok("unlock", "--yes", project=p).stdout
    assert ledger_query(p, "SELECT count(*) FROM bf_locks") == [(0,)]

    _lock(p, os.getpid())  # a live holder: this very process
    message = refused("unlock", "--yes", project=p)
    assert f"pid {os.getpid()}" in message and "still running" in message
    assert ledger_query(p, "SELECT pid FROM bf_locks") == [(os.getpid(),)]
    ledger_query(p, "DELETE FROM bf_locks")
    assert "not locked" in ok("unlock", "--yes", project=p).stdout


# --- the CI workflow ------------------------------------------------------------------------------------

def _workflow() -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def _run_steps(job: dict[str, Any]) -> str:
    """The job's shell steps, in order, but the one installing backfill (the test runs this checkout's)."""
    return "\n".join(str(step["run"]) for step in job["steps"] if "run" in step and step.get("id") != "install")


def test_the_ci_workflow_parses_and_names_the_commands() -> None:
    doc = _workflow()
    triggers: dict[str, Any] = doc["on"] if "on" in doc else doc[True]  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    review = next(j for j in jobs.values() if "pull_request" in str(j.get("if", "")))
    deploy = next(j for j in jobs.values() if "push" in str(j.get("if", "")))
    review_runs, deploy_runs = _run_steps(review), _run_steps(deploy)
    assert "backfill validate" in review_runs
    assert "git merge-base" in review_runs and "backfill diff --base" in review_runs
    assert "--format markdown" in review_runs
    assert "backfill apply --yes" in deploy_runs
    assert "backfill apply" not in review_runs
    assert "${{" not in review_runs + deploy_runs  # expressions reach scripts through env: no injection
    assert any(s.get("id") == "install" for s in review["steps"]) and any(s.get("id") == "install"
                                                                          for s in deploy["steps"])
    assert any("fetch-depth: 0" in yaml.safe_dump(s) for s in review["steps"] if "uses" in s)
    assert any("github-script" in str(s.get("uses", "")) for s in review["steps"])  # the PR comment
    assert (ROOT / "examples" / "ci" / "README.md").read_text().count("backfill.yml") >= 1


def _sh(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True)


def test_the_ci_commands_on_a_pull_request_then_on_main(
        tutorial: Path, prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The workflow's own `run:` scripts, in a clone of a repository with an `origin`, as CI runs them."""
    doc = _workflow()
    jobs = doc["jobs"]
    review = next(j for j in jobs.values() if "pull_request" in str(j.get("if", "")))
    deploy = next(j for j in jobs.values() if "push" in str(j.get("if", "")))
    work = tmp_path_factory.mktemp("ci")
    origin = work / "origin.git"
    git(work, "init", "-q", "--bare", "-b", "main", str(origin))
    make_repo(tutorial)
    git(tutorial.parent, "remote", "add", "origin", str(origin))
    git(tutorial.parent, "push", "-q", "origin", "main")
    # the pull request: main moved on meanwhile (another change merged), the branch changes dim_products
    clone = work / "pr"
    git(work, "clone", "-q", str(origin), str(clone))
    git(clone, "config", "user.email", "dev@example.com")
    git(clone, "config", "user.name", "Dev")
    git(clone, "checkout", "-q", "-b", "trim-categories")
    change_dim_products(clone / "retail", "TRIM(p.category)")
    commit(clone, "trim product categories")
    edit(tutorial / "sql" / "dim_customer.sql", "SELECT", "SELECT  -- reformatted on main\n   ")
    commit(tutorial.parent, "reformat dim_customer")
    git(tutorial.parent, "push", "-q", "origin", "main")
    git(clone, "fetch", "-q", "origin")

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_API_URL": prefect_api, "BASE_REF": "main", **doc.get("env", {}),
           "BACKFILL_PROJECT": "retail", "GITHUB_STEP_SUMMARY": str(work / "summary.md")}
    pr = _sh(_run_steps(review), clone, env)
    assert pr.returncode == 0, pr.stdout + pr.stderr
    comment = (clone / "backfill-diff.md").read_text()
    # against the merge base: the branch's own change only, not main's dim_customer reformatting reversed
    assert "dim_products" in comment and "dim_customer" not in comment
    assert comment.startswith("<!-- backfill-diff -->")
    assert "14 changed" in comment

    assert "dim_products" in (work / "summary.md").read_text()

    # merged: CI on main applies the specs
    git(clone, "checkout", "-q", "-b", "merge", "origin/main")
    git(clone, "merge", "-q", "--no-edit", "trim-categories")
    git(clone, "push", "-q", "origin", "HEAD:main")
    main = work / "main"
    git(work, "clone", "-q", str(origin), str(main))
    shutil.copytree(tutorial / "data", main / "retail" / "data")
    push = _sh(_run_steps(deploy), main, env)
    assert push.returncode == 0, push.stdout + push.stderr
    assert "tutorial_logical: 56 success" in push.stdout
    assert json.loads(ok("status", "--json", project=main / "retail").stdout)["tables"][0]["missing"] == 0
