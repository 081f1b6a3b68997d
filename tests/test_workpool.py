"""Work-pool execution end to end: a real Prefect server, a real process work pool, two real
`prefect worker start` processes, the tutorial on a PostgreSQL warehouse and ledger (fresh schemas).

One pool and one pair of workers serve the whole module. Skipped, with the reason, where PostgreSQL
is not running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import oracle
import psycopg
import pytest
from conftest import TUTORIAL_TABLES
from conftest_pg import PgServer, pg_server  # noqa: F401 - the fixture
from steering import edit

from backfill.run.apply import apply_project

BIN = Path(sys.executable).parent
INTEGRATION = [date(2026, 6, 25) + timedelta(days=i) for i in range(20)]
LOGICAL = [date(2026, 7, 1) + timedelta(days=i) for i in range(14)]
LEASE = "6"
ODS = ("ods_product", "ods_customer", "ods_order")


@pytest.fixture(scope="module")
def pool(prefect_api: str, pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
         ) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A process work pool with two workers (each takes up to two flow runs at once)."""
    name = f"bf-test-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "BF_TEST_WAREHOUSE_URL": pg_server.url,
           "BF_TEST_STATE_URL": pg_server.url, "BACKFILL_LEASE_SECONDS": LEASE,
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", name, "--type", "process"], env=env,
                   check=True, capture_output=True, timeout=120)
    logs = tmp_path_factory.mktemp("workers")
    workers = [subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", name, "--limit", "2",
                                 "--name", f"{name}-{n}"], env=env, start_new_session=True,
                                stdout=open(logs / f"w{n}.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
               for n in (1, 2)]
    try:
        yield name, workers
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait()


@pytest.fixture()
def pg_project(tutorial: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
               pool: tuple[str, list[Any]]) -> tuple[Path, str, str]:
    warehouse, state = pg_server.new_schema(), pg_server.new_schema()
    monkeypatch.setenv("BF_TEST_WAREHOUSE_URL", pg_server.url)
    monkeypatch.setenv("BF_TEST_STATE_URL", pg_server.url)
    monkeypatch.setenv("BACKFILL_LEASE_SECONDS", LEASE)
    spec = tutorial / "project.yaml"
    edit(spec, "engine: {type: duckdb, path: .backfill/warehouse.duckdb}",
         f"engine: {{type: postgres, url_env: BF_TEST_WAREHOUSE_URL, schema: {warehouse}}}")
    edit(spec, "state: .backfill/state.db", f"state: {{url_env: BF_TEST_STATE_URL, schema: {state}}}\n"
                                            f"executor: {{work_pool: {pool[0]}}}")
    return tutorial, warehouse, state


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type,unused-ignore]


def _assert_oracle_and_exactly_once(url: str, project: Path, warehouse: str, state: str,
                                    tables: tuple[str, ...] = TUTORIAL_TABLES) -> None:
    import yaml

    loaded = set(INTEGRATION)
    total = sum(len(INTEGRATION if t.startswith("ods_") else LOGICAL) for t in tables)
    for table in tables:
        fields = [f["name"] for f in yaml.safe_load((project / "tables" / f"{table}.yaml").read_text())["fields"]]
        cols = ", ".join(f'"{f}"' for f in fields)
        for ds in (INTEGRATION if table.startswith("ods_") else LOGICAL):
            with psycopg.connect(url) as conn:
                rows = conn.execute(f'SELECT {cols} FROM "{warehouse}"."{table}" WHERE ds = %s', [ds]).fetchall()
            assert oracle.sort_rows(rows) == oracle.expected(project, table, ds, loaded), (table, ds)
    writes = _query(url, "SELECT split_part(attempt_id, ':', 2), count(*) "
                         f'FROM "{warehouse}"._backfill_commits GROUP BY 1')
    assert len(writes) == total
    assert all(n == 1 for _, n in writes), [w for w in writes if w[1] != 1]
    assert _query(url, f'SELECT status, count(*) FROM "{state}".bf_instances GROUP BY 1') == [("success", total)]


def _worker_pids(url: str, state: str) -> set[int]:
    logs = [r[0] for r in _query(url, f'SELECT log FROM "{state}".bf_attempts')]
    return {int(m) for log in logs for m in re.findall(r"worker pid (\d+)", log or "")}


def test_tutorial_on_two_workers_matches_the_oracle(pg_project: tuple[Path, str, str], pg_server: PgServer,  # noqa: F811
                                                    pool: tuple[str, list[Any]], prefect_api: str) -> None:
    project, warehouse, state = pg_project
    messages: list[str] = []
    report = apply_project(project, say=messages.append)
    assert report.ok, report.backfills
    assert {b.name: b.counts for b in report.backfills} == {
        "tutorial_integration": {"success": 60}, "tutorial_logical": {"success": 56}}
    _assert_oracle_and_exactly_once(pg_server.url, project, warehouse, state)
    assert _worker_pids(pg_server.url, state) == {w.pid for w in pool[1]}, "groups ran on both workers"
    ids = [m.split(": flow run ")[1].split()[0] for m in messages if "on work pool" in m]
    assert len(ids) == 6  # one per group and backfill
    runs = httpx.post(f"{prefect_api}/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}).json()
    assert len(runs) == 6 and {r["state_type"] for r in runs} == {"COMPLETED"}
    assert all("project:retail" in r["tags"] for r in runs)
    assert sum("backfill:tutorial_logical" in r["tags"] for r in runs) == 3
    assert apply_project(project, say=lambda m: None).nothing_to_do


def test_each_group_submitted_twice_runs_nothing_twice(pg_project: tuple[Path, str, str], pg_server: PgServer,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.deployments

    project, warehouse, state = pg_project
    (project / "backfills" / "logical_tables.yaml").unlink()  # the integration backfill: 3 groups, 60 instances
    real = prefect.deployments.run_deployment
    duplicates: list[str] = []

    def twice(*args: Any, **kwargs: Any) -> Any:
        """Every group goes to the pool twice more: once under a new idempotency key (a second flow
        run of the same group: the ledger's claims keep it from running anything twice), once under
        the same key (Prefect answers with the same flow run)."""
        other: Any = real(*args, **{**kwargs, "idempotency_key": kwargs["idempotency_key"] + ":again"})
        duplicates.append(str(other.id))
        first: Any = real(*args, **kwargs)
        again: Any = real(*args, **kwargs)
        assert str(again.id) == str(first.id)
        return first

    monkeypatch.setattr(prefect.deployments, "run_deployment", twice)
    report = apply_project(project, say=lambda m: None)
    assert report.ok, report.backfills
    assert len(duplicates) == 3
    _assert_oracle_and_exactly_once(pg_server.url, project, warehouse, state, ODS)


def test_kill_9_of_a_flow_run_process_mid_group_then_apply_again(
        pg_project: tuple[Path, str, str], pg_server: PgServer, prefect_api: str) -> None:  # noqa: F811
    project, warehouse, state = pg_project
    (project / "backfills" / "logical_tables.yaml").unlink()  # the integration backfill: 3 groups, 60 instances
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = subprocess.Popen([str(BIN / "backfill"), "apply", "--yes", "--project", str(project)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    holder = psycopg.connect(pg_server.url)
    try:
        deadline = time.monotonic() + 180
        # ods_order is created just before the groups are submitted: lock it at once, so every group
        # stops mid-way (its first date's other tables written) on its first ods_order write
        while not _query(pg_server.url, f"SELECT 1 FROM pg_tables WHERE schemaname = '{warehouse}' "
                                        "AND tablename = 'ods_order'"):
            assert time.monotonic() < deadline and proc.poll() is None, "ods_order never appeared"
            time.sleep(0.02)
        holder.execute(f'LOCK TABLE "{warehouse}".ods_order IN ACCESS EXCLUSIVE MODE')
        victim = None
        while victim is None:
            assert time.monotonic() < deadline and proc.poll() is None, "no dws_all attempt started"
            found = _query(pg_server.url, f"SELECT pid FROM \"{state}\".bf_attempts WHERE status = 'running' "
                                          "AND instance_id LIKE 'tutorial_integration/ods_order/%'")
            victim = found[0][0] if found else None
            time.sleep(0.1)
        written = _query(pg_server.url, f'SELECT count(*) FROM "{warehouse}"._backfill_commits')[0][0]
        assert 0 < written < 60, "the kill lands mid-way"
        os.kill(victim, signal.SIGKILL)
    finally:
        holder.rollback()
        holder.close()
    out, _ = proc.communicate(timeout=300)
    text = out.decode()
    assert proc.returncode == 1, text
    assert "crashed" in text, text
    again = apply_project(project, say=lambda m: None)
    assert again.ok, again.backfills
    assert again.recovered, "the crashed run's claimed instance was recovered"
    _assert_oracle_and_exactly_once(pg_server.url, project, warehouse, state, ODS)


def test_a_failing_instance_makes_its_flow_run_failed(pg_project: tuple[Path, str, str], prefect_api: str) -> None:
    project, _warehouse, _state = pg_project
    (project / "backfills" / "logical_tables.yaml").unlink()
    integration = project / "backfills" / "integration.yaml"
    edit(integration, "data_timestamp: {start: 2026-06-25, end: 2026-07-14}",
         "data_timestamp: {start: 2026-06-25, end: 2026-06-26}")
    edit(integration, "name: tutorial_integration", "name: failing_on_pool")
    edit(integration, "groups: 3", "groups: 1")
    where = "AND DATE '{{ end_ds }}'"
    edit(project / "sql" / "ods_order.sql", where, where + "\n  AND quantity // 0 >= 0")
    messages: list[str] = []
    report = apply_project(project, say=messages.append)
    assert not report.ok
    ids = [m.split(": flow run ")[1].split()[0] for m in messages if "failing_on_pool group" in m]
    runs = httpx.post(f"{prefect_api}/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}).json()
    assert len(runs) == 1 and runs[0]["state_type"] == "FAILED"
    # ods_order 06-25..06-26 is one batch: its members fail together
    assert runs[0]["state"]["message"].endswith("2 of 6 instance(s) did not succeed: 2 failed")
