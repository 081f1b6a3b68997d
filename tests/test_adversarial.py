"""Adversarial probes: a template may touch only declared tables (through `ref`) and files under the
project's source folders (through `source`); it cannot read, write or hang anything else.

Each probe is refused at `validate` with its exact `error:` line, and where the SQL is handed to an
engine anyway (defence in depth), the engine refuses it at run time and writes nothing: no rows in
the warehouse, no marker row, no file outside the project.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backfill.cli import main as cli_main
from backfill.run.engines import EngineError, WriteRequest
from backfill.run.engines.duckdb_engine import DuckDBEngine
from backfill.run.engines.postgres_engine import PostgresEngine
from backfill.spec.model import Field, Table, Template

sys.path.insert(0, str(Path(__file__).parent))
from conftest_pg import PgServer, pg_server  # noqa: E402, F401

BASE = Path(__file__).parent / "fixtures" / "base"
ODS = "SELECT order_id, customer_id, amount\nFROM {}\nWHERE CAST(order_time AS DATE) = DATE '{{{{ ds }}}}'\n"
FCT = ("SELECT\n    o.order_id,\n    o.customer_id,\n    o.amount,\n    {} AS city\n"
       "FROM {{{{ ref('ods_order') }}}} AS o\nLEFT JOIN {{{{ ref('ods_customer') }}}} AS c\n"
       "    ON c.customer_id = o.customer_id AND c.ds = DATE '{{{{ ds }}}}'\nWHERE o.ds = DATE '{{{{ ds }}}}'\n")
NOT_ALLOWED = ("function '{}' is not allowed in templates (it is not on the {} allow-list); "
               "if it is harmless, add it to allow_functions in project.yaml")


def refused(name: str, table: str = "ods_order", at: str = "2:6", dialect: str = "duckdb") -> str:
    return f"sql/{table}.sql:{at}: " + NOT_ALLOWED.format(name, dialect) + f" (table {table}, 2026-07-01)"
PG_PROJECT = ("name: shop\ndialect: postgres\nengine: {type: postgres, url_env: WAREHOUSE_URL}\n"
              "state: .backfill/state.db\nparams: {source_dir: data, region: north}\n")


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> PgServer:
    server: PgServer = request.getfixturevalue("pg_server")
    return server


@pytest.fixture(scope="module")
def runner() -> Iterator[CliRunner]:
    cli_main._register_optional()
    yield CliRunner()


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    shutil.copytree(BASE, root)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def errors_of(runner: CliRunner, root: Path, *args: str, command: str = "validate") -> tuple[int, list[str]]:
    result = runner.invoke(cli_main.app, [command, "--project", str(root), *args])
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]


# ------------------------------------------------------------------ refused at validate

VALIDATE_PROBES = {
    "read_text": ({"sql/ods_order.sql": ODS.format("read_text('/etc/passwd')")},
                  refused("read_text")),
    "read_csv_etc": ({"sql/ods_order.sql": ODS.format("read_csv('/etc/passwd', header = true)")},
                     "sql/ods_order.sql:2:6: read_csv may only read files under the project's source folders: "
                     "'/etc/passwd' is not a path inside the project; give a path under a source folder (data) "
                     "(table ods_order, 2026-07-01)"),
    "glob": ({"sql/ods_order.sql": ODS.format("glob('/etc/*')")},
             refused("glob")),
    "read_blob": ({"sql/ods_order.sql": ODS.format("read_blob('~/*')")},
                  refused("read_blob")),
    "source_home": ({"sql/ods_order.sql": ODS.format("read_csv({{ source('~/.bashrc') }}, header = true)")},
                    "sql/ods_order.sql:2:15: template: source('~/.bashrc'): '~/.bashrc' is not a path inside the "
                    "project; give a path under a source folder (data) (table ods_order, 2026-07-01)"),
    "query_marker": ({"sql/ods_order.sql": ODS.format("query('SELECT * FROM _backfill_writes')")},
                     refused("query")),
    "marker_table": ({"sql/ods_order.sql": ODS.format("_backfill_writes")},
                     "sql/ods_order.sql:2:6: unknown table '_backfill_writes': declare it in tables/ or fix the name "
                     "(table ods_order, 2026-07-01)"),
    "json_execute_serialized_sql": (
        {"sql/fct_order.sql": FCT.format("json_execute_serialized_sql('x')")},
        "sql/fct_order.sql:5:5: " + NOT_ALLOWED.format("json_execute_serialized_sql", "duckdb")
        + " (table fct_order, 2026-07-01)"),
    "checkpoint": ({"sql/ods_order.sql": ODS.format("checkpoint()")},
                   refused("checkpoint")),
    "duckdb_settings": ({"sql/ods_order.sql": ODS.format("duckdb_settings()")},
                        refused("duckdb_settings")),
}
PG_FUNCTIONS = ["pg_read_file('/etc/passwd')", "pg_ls_dir('.')", "lo_export(1, '/tmp/x')", "dblink_exec('x', 'y')",
                "pg_sleep(20)", "pg_advisory_lock(1)", "nextval('s')", "set_config('search_path', 'other', false)"]
for _call in PG_FUNCTIONS:
    _name = _call.split("(")[0]
    VALIDATE_PROBES["pg_" + _name] = (
        {"project.yaml": PG_PROJECT, "sql/fct_order.sql": FCT.format(_call)},
        "sql/fct_order.sql:5:5: " + NOT_ALLOWED.format(_name, "postgres") + " (table fct_order, 2026-07-01)")


@pytest.mark.parametrize("probe", sorted(VALIDATE_PROBES))
def test_probe_is_refused_at_validate(runner: CliRunner, tmp_path: Path, probe: str) -> None:
    files, message = VALIDATE_PROBES[probe]
    root = project(tmp_path, files)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    code, errors = errors_of(runner, root)
    assert code == 1
    assert errors == ["error: " + message]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_allow_functions_extends_the_list_and_plan_says_so(runner: CliRunner, tmp_path: Path) -> None:
    root = project(tmp_path, {
        "project.yaml": (BASE / "project.yaml").read_text() + "allow_functions: [md5_number_upper, hash]\n",
        "sql/fct_order.sql": FCT.format("CAST(md5_number_upper(o.order_id::VARCHAR) AS VARCHAR)"),
        # what fct_order reads is built too: `plan` refuses reads of a table nothing ever built
        "backfills/ods.yaml": "name: ods\ntargets: [{table: ods_order}, {table: ods_customer}]\n"
                              "data_timestamp: {start: 2026-07-01, end: 2026-07-05}\n"})
    code, errors = errors_of(runner, root)
    assert (code, errors) == (0, [])
    result = runner.invoke(cli_main.app, ["plan", "--project", str(root)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == ("functions allowed beyond the duckdb allow-list "
                                             "(allow_functions in project.yaml): md5_number_upper, hash")
    result = runner.invoke(cli_main.app, ["plan", "--project", str(root), "--json"])
    assert '"allow_functions": ["md5_number_upper", "hash"]' in result.stdout


# ------------------------------------------------------------------ refused again at run time

def _table(name: str = "t", kind: str = "fact", timeout: float | None = None) -> Table:
    return Table(name=name, kind=kind, fields=(Field("id", "BIGINT"), Field("a", "VARCHAR")),  # type: ignore[arg-type]
                 template=Template("SELECT 1", "x.sql"), spec_file=f"tables/{name}.yaml", timeout=timeout)


def _req(table: Table, sql: str, ds: str = "2026-07-01", attempt: str = "a1") -> WriteRequest:
    return WriteRequest(table=table, ds=ds, sql=sql, fields=None, instance_id=f"b/{table.name}/{ds}",
                        attempt_id=attempt, fingerprint="fp")


RUNTIME_DUCKDB = {
    "read_text": "SELECT 1 AS id, content AS a FROM read_text('/etc/passwd')",
    "read_csv_outside": "SELECT 1 AS id, CAST(column0 AS VARCHAR) AS a FROM read_csv('/etc/passwd', header = false)",
    "read_csv_climb": "SELECT 1 AS id, CAST(column0 AS VARCHAR) AS a FROM read_csv('data/../secret.csv')",
    "glob": "SELECT 1 AS id, file AS a FROM glob('/etc/*')",
    "read_blob": "SELECT 1 AS id, CAST(content AS VARCHAR) AS a FROM read_blob('~/*')",
    "home": "SELECT 1 AS id, CAST(column0 AS VARCHAR) AS a FROM read_csv('~/.bashrc')",
    "settings": "SELECT 1 AS id, value AS a FROM query('SET enable_external_access = true; SELECT 1 AS value')",
    "replacement_scan": "SELECT 1 AS id, CAST(column0 AS VARCHAR) AS a FROM 'secret.csv'",
}


@pytest.mark.parametrize("probe", sorted(RUNTIME_DUCKDB))
def test_duckdb_engine_refuses_what_validate_refuses(tmp_path: Path, probe: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok.csv").write_text("id,a\n1,x\n")
    (tmp_path / "secret.csv").write_text("id,a\n7,secret\n")
    engine = DuckDBEngine(".backfill/w.duckdb", tmp_path)
    try:
        engine.ensure_tables([t := _table()])
        with pytest.raises(EngineError) as info:
            engine.write_partition(_req(t, RUNTIME_DUCKDB[probe]))
        assert str(info.value).startswith("writing t partition 2026-07-01 failed: ")
        assert engine.query('SELECT count(*) FROM "t"') == [(0,)]
        assert engine.committed_attempt("a1") is None
        # the declared source folder stays readable, relative and absolute
        ok = f"SELECT id, a FROM read_csv('data/ok.csv', header = true) UNION ALL " \
             f"SELECT id + 1, a FROM read_csv('{tmp_path}/data/ok.csv', header = true)"
        assert engine.write_partition(_req(t, ok, attempt="a2")) == 2
    finally:
        engine.close()


def test_duckdb_configuration_is_locked(tmp_path: Path) -> None:
    engine = DuckDBEngine("w.duckdb", tmp_path)
    try:
        for statement in ("SET enable_external_access = true", "SET allowed_directories = ['/']",
                          "SET autoinstall_known_extensions = true", "INSTALL httpfs"):
            with pytest.raises(EngineError):
                engine.query(statement)
    finally:
        engine.close()


def test_duckdb_instance_timeout(tmp_path: Path) -> None:
    engine = DuckDBEngine("w.duckdb", tmp_path, timeout=0.5)
    try:
        engine.ensure_tables([t := _table()])
        slow = "SELECT count(*) AS id, 'x' AS a FROM range(100000000000) AS r(x) WHERE x % 7 = 3"
        with pytest.raises(EngineError) as info:
            engine.write_partition(_req(t, slow))
        assert str(info.value) == ("writing t partition 2026-07-01 failed: timed out after 0.5 s; raise `timeout` "
                                   "in tables/t.yaml (or the project's default in project.yaml) if it needs longer")
        assert engine.query('SELECT count(*) FROM "t"') == [(0,)]
        assert engine.committed_attempt("a1") is None
    finally:
        engine.close()


def test_postgres_session_changes_do_not_leak_into_later_instances(pg: PgServer, tmp_path: Path) -> None:
    schema, other = pg.new_schema(), pg.new_schema()
    pg.conn.execute(f'CREATE SCHEMA "{other}"')
    pg.conn.execute(f'CREATE TABLE "{other}"."t" (id BIGINT, a VARCHAR, ds DATE)')
    pg.conn.execute(f'CREATE TABLE "{other}"."_backfill_writes" (attempt_id VARCHAR, '
                           'instance_id VARCHAR, table_name VARCHAR, ds VARCHAR, fingerprint VARCHAR, '
                           '"rows" BIGINT, written_at TIMESTAMP)')
    engine = PostgresEngine(pg.url, schema, tmp_path, pool_size=1)
    try:
        engine.ensure_tables([t := _table()])
        leak = f"SELECT 1 AS id, set_config('search_path', '{other}', false) AS a"
        assert engine.write_partition(_req(t, leak, attempt="a1")) == 1
        # the one pooled connection is reused: the next instances still write into the engine's schema
        for n, ds in enumerate(("2026-07-02", "2026-07-03")):
            assert engine.write_partition(_req(t, "SELECT 2 AS id, 'b' AS a", ds=ds, attempt=f"b{n}")) == 1
        assert engine.query('SELECT count(*) FROM "t"') == [(3,)]
        assert pg.conn.execute(f'SELECT count(*) FROM "{other}"."t"').fetchall() == [(0,)]
        assert pg.conn.execute(f'SELECT count(*) FROM "{other}"."_backfill_writes"').fetchall() == [(0,)]
        assert engine.committed_attempt("a1") == 1
        assert engine.query("SELECT current_setting('search_path')") == [(schema,)]
    finally:
        engine.close()


def test_postgres_instance_timeout(pg: PgServer, tmp_path: Path) -> None:
    engine = PostgresEngine(pg.url, pg.new_schema(), tmp_path, pool_size=1)
    try:
        engine.ensure_tables([t := _table(timeout=0.5)])
        with pytest.raises(EngineError) as info:
            engine.write_partition(_req(t, "SELECT 1 AS id, 'x' AS a FROM pg_sleep(20)"))
        assert str(info.value) == ("writing t partition 2026-07-01 failed: timed out after 0.5 s; raise `timeout` "
                                   "in tables/t.yaml (or the project's default in project.yaml) if it needs longer")
        assert engine.query('SELECT count(*) FROM "t"') == [(0,)]
        assert engine.committed_attempt("a1") is None
        assert engine.query("SELECT current_setting('statement_timeout')") == [("0",)]
    finally:
        engine.close()


def test_integration_source_read_still_works_on_postgres(pg: PgServer, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("id,a\n1,x\n2,y\n")
    (tmp_path / "secret.csv").write_text("id,a\n7,secret\n")
    engine = PostgresEngine(pg.url, pg.new_schema(), tmp_path, pool_size=1)
    try:
        engine.ensure_tables([t := _table("ods", kind="integration")])
        ok = "SELECT id, a FROM read_csv('data/x.csv', header = true)"
        assert engine.write_partition(_req(t, ok)) == 2
        with pytest.raises(EngineError):
            engine.write_partition(_req(t, "SELECT id, a FROM read_csv('secret.csv', header = true)",
                                        ds="2026-07-02", attempt="a2"))
        assert engine.query('SELECT ds, count(*) FROM "ods" GROUP BY ds') == [(date(2026, 7, 1), 2)]
    finally:
        engine.close()
