"""`backfill why` on waiting instances while an apply runs in another process, and `instances --watch`
from a third one, on a SQLite and on a PostgreSQL ledger.

The apply is a `backfill apply` subprocess (on the session Prefect server) with `max_parallel: 1`;
dim_customer of two dates reads a FIFO, so it runs until the test writes to it: the instance holding
the only slot is running, the other one waits for the slot, what reads it waits for its upstream and
the next date of its group waits for that date.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest_pg import PgServer, pg_server  # noqa: F401 - the fixture
from steering import cli, dates, edit, statuses
from test_operations import gate, iid, release

BACKFILL = str(Path(sys.executable).parent / "backfill")
HOLD = {"2026-07-01": "hold1.csv", "2026-07-03": "hold3.csv"}


def _held_project(project: Path, logical_end: str) -> None:
    """max_parallel 1; logical 07-01..`logical_end` in 2 groups; dim_customer of the HOLD dates reads a FIFO."""
    dates(project, "integration", "2026-06-25", "2026-07-04")
    dates(project, "logical_tables", "2026-07-01", logical_end)
    edit(project / "backfills" / "logical_tables.yaml", "groups: 3", "groups: 2")
    edit(project / "project.yaml", "max_parallel: 4", "max_parallel: 1")
    where = "WHERE c.ds = DATE '{{ ds }}'"
    conditions = "".join("{% if ds == '" + ds + "' %}\n    AND " + gate(name) + "{% endif %}"
                         for ds, name in HOLD.items() if ds <= logical_end)
    edit(project / "sql" / "dim_customer.sql", where, where + conditions)
    for ds, name in HOLD.items():
        if ds <= logical_end:
            os.mkfifo(project / "data" / name)


def _wait(ok: Any, what: str, proc: subprocess.Popen[str], read: Any, timeout: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if ok(found):
            return dict(found)
        assert proc.poll() is None, f"the apply ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {found}"
        time.sleep(0.05)


def _why(project: Path, instance: str) -> dict[str, Any]:
    result = cli(project, "why", instance, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _pages(out: str) -> list[list[str]]:
    """The pages `instances --watch` wrote into a pipe, each a list of lines (the final footer left out)."""
    assert re.fullmatch(r"(--- \d\d:\d\d:\d\d\n(.*\n)*?)+ended: .*\n", out), out
    return [page.splitlines() for page in re.split(r"^--- \d\d:\d\d:\d\d\n", out, flags=re.M)[1:]]


def _first_page(watch: subprocess.Popen[str]) -> str:
    """Read what `instances --watch` wrote up to its first page's tutorial_logical title (it flushes pages)."""
    assert watch.stdout is not None
    seen = ""
    while not any(line.startswith("tutorial_logical: ") for line in seen.splitlines()):
        line = watch.stdout.readline()
        assert line, f"the watch ended early: {seen}"
        seen += line
    return seen


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([BACKFILL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "80", **(env or {})})


def test_why_waiting_instances_during_an_apply_and_watch_until_it_ends(tutorial: Path, prefect_api: str) -> None:
    _held_project(tutorial, "2026-07-04")  # groups 07-01..02 and 07-03..04
    apply = _spawn("apply", "--yes", "--project", str(tutorial))
    watch: subprocess.Popen[str] | None = None
    try:
        holders = [iid("dim_customer", ds) for ds in HOLD]
        s = _wait(lambda s: any(s.get(h) == "running" for h in holders), "a held instance running", apply,
                  lambda: statuses(tutorial))
        running = next(h for h in holders if s[h] == "running")
        other = next(h for h in holders if h != running)
        ds = running.split("/")[2]
        later = iid("dim_customer", "2026-07-02" if ds == "2026-07-01" else "2026-07-04")
        watch = _spawn("instances", "tutorial_logical", "--watch", "--project", str(tutorial))

        slot = _why(tutorial, other)
        assert slot["status"] == "waiting" and slot["chain"] == [] and slot["last_attempt"] is None
        assert slot["waits"] == [{"kind": "slot", "instance": None, "detail":
                                  f"a concurrency slot: 1 of max_parallel 1 running ({running.split('/', 1)[1]})"}]
        assert slot["summary"] == f"waiting: for {slot['waits'][0]['detail']}"
        assert [r["table"] for r in slot["reads"]] == ["ods_customer"]

        fact = _why(tutorial, iid("fct_order_buy_di", ds))
        assert {"kind": "upstream", "instance": running,
                "detail": f"upstream dim_customer/{ds} (running)"} in fact["waits"]
        assert {r["table"] for r in fact["reads"]} == {"ods_order", "dim_products", "dim_customer"}
        reads = {r["table"]: r for r in fact["reads"]}
        assert reads["dim_customer"]["instances"] == [[running, "running"]]
        assert {t: (r["ranges"], r["present"], r["expected"]) for t, r in reads.items()} == {
            "ods_order": ([[ds, ds]], 1, 1), "dim_customer": ([[ds, ds]], 0, 1),
            "dim_products": ([[ds, ds]], int(s.get(iid("dim_products", ds)) == "success"), 1)}

        nxt = _why(tutorial, later)
        [group] = [w for w in nxt["waits"] if w["kind"] == "group"]
        group_no = 1 if ds == "2026-07-01" else 2
        assert group["detail"].startswith(f"an earlier date of its group {group_no}: ")
        assert f"dim_customer/{ds} (running)" in group["detail"] and group["instance"].endswith(f"/{ds}")
        human = cli(tutorial, "why", later)
        assert human.exit_code == 0, human.output
        flat = " ".join(human.stdout.split())  # wrapped at 80 columns
        assert flat.startswith(f"{later}: waiting: for an earlier date of its group {group_no}: dim_")
        assert f"waits for: group: an earlier date of its group {group_no}: " in flat
        assert max(len(line) for line in human.stdout.splitlines()) <= 80
        assert "last attempt: none (it has not run)" in human.stdout

        first = _first_page(watch)
        release(tutorial / "data" / HOLD[ds])
        release(tutorial / "data" / HOLD[other.split("/")[2]])
        out, err = apply.communicate(timeout=120)
        assert apply.returncode == 0, (out, err)
        wout, werr = watch.communicate(timeout=30)
        wout = first + wout
    finally:
        for proc in (apply, watch):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert watch.returncode == 0, (wout, werr)
    pages = _pages(wout)
    assert len(pages) >= 2, wout  # redrawn while it ran
    assert pages[0][0].startswith("tutorial_logical: running (")
    assert pages[-1][0] == "tutorial_logical: success (16 success)"
    assert wout.endswith("\nended: tutorial_logical success\n")
    assert max(len(line) for line in wout.splitlines()) <= 80

    done = cli(tutorial, "why", running)
    assert done.exit_code == 0 and done.stdout.startswith(f"{running}: success, current\n")
    assert "last attempt 1 success" in done.stdout


def test_watch_on_a_postgresql_ledger(tutorial: Path, pg_server: PgServer, prefect_api: str) -> None:  # noqa: F811
    _held_project(tutorial, "2026-07-02")
    schema = pg_server.new_schema()
    env = {"BF_TEST_STATE_URL": pg_server.url}
    edit(tutorial / "project.yaml", "state: .backfill/state.db",
         f"state: {{url_env: BF_TEST_STATE_URL, schema: {schema}}}")
    apply = _spawn("apply", "--yes", "--project", str(tutorial), env=env)
    watch: subprocess.Popen[str] | None = None
    held = iid("dim_customer", "2026-07-01")

    def pg_statuses() -> dict[str, str]:
        try:
            got = pg_server.conn.execute(f'SELECT id, status FROM "{schema}".bf_instances').fetchall()
        except Exception:  # noqa: BLE001 - the apply has not created the ledger yet
            return {}
        return dict(got)

    try:
        _wait(lambda s: s.get(held) == "running", f"{held} running", apply, pg_statuses)
        watch = _spawn("instances", "--watch", "--project", str(tutorial), env=env)
        first = _first_page(watch)
        assert watch.poll() is None  # still watching: the held instance runs
        release(tutorial / "data" / HOLD["2026-07-01"])
        out, err = apply.communicate(timeout=120)
        assert apply.returncode == 0, (out, err)
        wout, werr = watch.communicate(timeout=30)
        wout = first + wout
    finally:
        for proc in (apply, watch):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert watch.returncode == 0, (wout, werr)
    pages = _pages(wout)
    assert any(line.startswith("tutorial_logical: running (") for line in pages[0])
    assert "tutorial_logical: success (8 success)" in pages[-1]
    assert wout.endswith("\nended: tutorial_integration success, tutorial_logical success\n")


@pytest.fixture(autouse=True)
def _no_pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BF_TEST_STATE_URL", raising=False)
