"""The tutorial end to end with both the ledger and the warehouse on a real PostgreSQL server."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import oracle
import psycopg
import pytest
from conftest import TUTORIAL_TABLES
from conftest_pg import PgServer, pg_server  # noqa: F401 - the fixture

from backfill.run.apply import apply_project
from backfill.state.ledger import SCHEMA_VERSION, Ledger

INTEGRATION = [date(2026, 6, 25) + timedelta(days=i) for i in range(20)]
LOGICAL = [date(2026, 7, 1) + timedelta(days=i) for i in range(14)]


@pytest.fixture()
def pg_project(tutorial: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:  # noqa: F811
    warehouse, state = pg_server.new_schema(), pg_server.new_schema()
    monkeypatch.setenv("BF_TEST_WAREHOUSE_URL", pg_server.url)
    monkeypatch.setenv("BF_TEST_STATE_URL", pg_server.url)
    spec = tutorial / "project.yaml"
    text = spec.read_text()
    text = text.replace("engine: {type: duckdb, path: .backfill/warehouse.duckdb}",
                        f"engine: {{type: postgres, url_env: BF_TEST_WAREHOUSE_URL, schema: {warehouse}}}")
    text = text.replace("state: .backfill/state.db", f"state: {{url_env: BF_TEST_STATE_URL, schema: {state}}}")
    assert "postgres" in text and "BF_TEST_STATE_URL" in text
    spec.write_text(text)
    return tutorial, warehouse, state


def _rows(url: str, schema: str, project: Path, table: str, ds: date) -> list[tuple[object, ...]]:
    import yaml

    fields = [f["name"] for f in yaml.safe_load((project / "tables" / f"{table}.yaml").read_text())["fields"]]
    cols = ", ".join(f'"{f}"' for f in fields)
    with psycopg.connect(url) as conn:
        rows = conn.execute(f'SELECT {cols} FROM "{schema}"."{table}" WHERE ds = %s', [ds]).fetchall()
    return oracle.sort_rows(rows)


def test_tutorial_on_postgresql_matches_the_oracle(pg_project: tuple[Path, str, str], pg_server: PgServer,  # noqa: F811
                                                   prefect_api: str) -> None:
    project, warehouse, state = pg_project
    report = apply_project(project, say=lambda m: None)
    assert report.ok, report.backfills
    assert {b.name: b.counts for b in report.backfills} == {
        "tutorial_integration": {"success": 60}, "tutorial_logical": {"success": 56}}
    loaded = set(INTEGRATION)
    for table in TUTORIAL_TABLES:
        for ds in (INTEGRATION if table.startswith("ods_") else LOGICAL):
            assert _rows(pg_server.url, warehouse, project, table, ds) == oracle.expected(project, table, ds, loaded)
    # the ledger lives in PostgreSQL, in its own schema, and knows everything is done
    with psycopg.connect(pg_server.url) as conn:
        n = conn.execute(f'SELECT count(*) FROM "{state}".bf_instances WHERE status = %s', ["success"]).fetchone()
        version = conn.execute(f"SELECT value FROM \"{state}\".bf_meta WHERE key = 'schema_version'").fetchone()
    assert n is not None and n[0] == 116
    assert version is not None and int(version[0]) == SCHEMA_VERSION
    again = apply_project(project, say=lambda m: None)
    assert again.nothing_to_do


def test_postgresql_ledger_lock_is_exclusive(pg_server: PgServer) -> None:  # noqa: F811
    schema = pg_server.new_schema()
    url = "postgresql+psycopg://" + pg_server.url.split("://", 1)[1]
    first, second = Ledger.open(url, schema), Ledger.open(url, schema)
    try:
        assert first.try_lock("apply one") is None
        holder = second.try_lock("apply two")
        assert holder is not None and holder["purpose"] == "apply one" and holder["alive"]
        assert first.unlock()
        assert second.try_lock("apply two") is None
    finally:
        first.close()
        second.close()
