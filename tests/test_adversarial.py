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

# typed sqlglot nodes that carry the name of the function they write out: judged by that name
PG_FROM_DUCKDB = PG_PROJECT.replace("dialect: postgres", "dialect: duckdb")
for _node, _where in (("ANONYMOUS_AGG_FUNC", "5:25"), ("COMBINED_AGG_FUNC", "5:24")):  # at the name it writes
    for _name, _args in (("pg_read_file", "'/etc/passwd'"), ("lo_export", "4242, '/tmp/x'")):
        VALIDATE_PROBES[f"{_node.lower()}_{_name}"] = (
            {"project.yaml": PG_FROM_DUCKDB, "sql/fct_order.sql": FCT.format(f"{_node}('{_name}', {_args})")},
            f"sql/fct_order.sql:{_where}: " + NOT_ALLOWED.format(_name, "postgres") + " (table fct_order, 2026-07-01)")


@pytest.mark.parametrize("probe", sorted(VALIDATE_PROBES))
def test_probe_is_refused_at_validate(runner: CliRunner, tmp_path: Path, probe: str) -> None:
    files, message = VALIDATE_PROBES[probe]
    root = project(tmp_path, files)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    code, errors = errors_of(runner, root)
    assert code == 1
    assert errors == ["error: " + message]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_apply_of_a_probe_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    """Refused before anything exists: no ledger, no warehouse, no file outside the project."""
    files, message = VALIDATE_PROBES["read_text"]
    root = project(tmp_path, files)
    outside = sorted(p.name for p in tmp_path.iterdir())
    code, errors = errors_of(runner, root, "--yes", command="apply")
    assert (code, errors) == (1, ["error: " + message])
    assert not (root / ".backfill").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == outside


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
    pg.conn.execute(f'CREATE TABLE "{other}"."_backfill_commits" (attempt_id VARCHAR, "rows" BIGINT)')
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
        assert pg.conn.execute(f'SELECT count(*) FROM "{other}"."_backfill_commits"').fetchall() == [(0,)]
        assert engine.committed_attempt("a1") == 1
        assert engine.query("SELECT current_setting('search_path')") == [(schema,)]
    finally:
        engine.close()


def test_postgres_session_locks_do_not_outlive_the_instance(pg: PgServer, tmp_path: Path) -> None:
    engine = PostgresEngine(pg.url, pg.new_schema(), tmp_path, pool_size=1)
    try:
        engine.ensure_tables([t := _table()])
        sql = "SELECT 1 AS id, CAST(pg_advisory_lock(4242) AS VARCHAR) AS a"
        assert engine.write_partition(_req(t, sql)) == 1
        # the pooled connection was reset: another session can take the lock at once
        assert pg.conn.execute("SELECT pg_try_advisory_lock(4242)").fetchall() == [(True,)]
        pg.conn.execute("SELECT pg_advisory_unlock(4242)")
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


def test_a_percent_sign_in_template_sql_reaches_postgres_as_written(pg: PgServer, tmp_path: Path) -> None:
    engine = PostgresEngine(pg.url, pg.new_schema(), tmp_path, pool_size=1)
    try:
        engine.ensure_tables([t := _table("ods", kind="fact")])
        sql = "SELECT x.id, x.a FROM (VALUES (1, 'a%b'), (2, 'ab'), (3, '%s')) AS x (id, a) WHERE x.a LIKE '%%'"
        assert engine.write_partition(_req(t, sql)) == 3
        percent = "SELECT x.id, x.a FROM (VALUES (1, 'a%b'), (2, 'ab')) AS x (id, a) WHERE position('%' IN x.a) > 0"
        assert engine.write_partition(_req(t, percent, ds="2026-07-02", attempt="a2")) == 1
        assert engine.query('SELECT ds, id, a FROM "ods" ORDER BY ds, id') == [
            (date(2026, 7, 1), 1, "a%b"), (date(2026, 7, 1), 2, "ab"), (date(2026, 7, 1), 3, "%s"),
            (date(2026, 7, 2), 1, "a%b")]
    finally:
        engine.close()


# ------------------------------------------------------------------ bounded rendering

RENDER_PROBES = {
    "format_filter": ("{{ '%2000000000d'|format(1) }}", "format width 2000000000 is too large"),
    "str_format": ("{{ '{:>2000000000}'.format('a') }}", "format width 2000000000 is too large"),
    "center": ("{{ 'a'.center(2000000000) }}", "str.center would make 2,000,000,000 characters"),
    "ljust_filter_chain": ("{{ ('a'|center(900000)).ljust(2000000000) }}", "str.ljust would make"),
    "join": ("{{ ('x' * 100000)|join('y' * 100000) }}", "the join filter would make 10,000,000,000"),
    "replace": ("{{ ('a' * 100000).replace('a', 'b' * 100000) }}", "str.replace would make 10,000,000,000"),
    "power_chain": ("{{ ((10 ** 100) ** 100) ** 100 }}", "'**' would make a number of more than 100,000 bits"),
    "range_nesting": ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                      "rendering took more than 2 s of CPU time"),
    "silent_recursion": ("{% macro f(n) %}{% set y = f(n + 1) %}{% endmacro %}{% set x = f(1) %}",
                         "macros call each other more than 50 deep"),
    "doubling": ("{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 "joining text with '~' would make 1,048,576 characters"),
    "output": ("{% for i in range(30) %}{{ 'x' * 50000 }}{% endfor %}", "the rendered SQL is longer than 1,000,000"),
    "kept_in_a_list": ("{% set s = 'x' * 90000 %}{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}{% set l = [] %}"
                       "{% for i in range(100000) %}{% if l.append(s ~ i) %}{% endif %}{% endfor %}",
                       "rendering made more than 20,000,000 characters or items in all"),
}


@pytest.mark.parametrize("probe", sorted(RENDER_PROBES))
def test_rendering_is_bounded_in_time_and_memory(probe: str) -> None:
    import tracemalloc
    from datetime import datetime

    from backfill.sql.templates import CompiledTemplate, RenderContext, TemplateFailure, quote_literal

    source, message = RENDER_PROBES[probe]
    table = Table(name="t", kind="fact", fields=(Field("c", "VARCHAR"),), template=Template(source, "t.sql"),
                  spec_file="t.yaml")
    tracemalloc.start()
    try:
        with pytest.raises(TemplateFailure) as info:
            CompiledTemplate(table, lambda n: n, quote_literal, "duckdb").render(
                RenderContext(datetime(2026, 7, 1), False, {}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.message.startswith("template exceeds a rendering limit: ")
    assert message in info.value.message
    assert peak < 64 * 2**20, f"rendering took {peak / 2**20:.0f} MB before it was stopped"


# ------------------------------------------------------------------ files that are not what they seem

def test_fifo_symlink_loops_folders_and_huge_files_are_refused(runner: CliRunner, tmp_path: Path) -> None:
    import os

    root = project(tmp_path, {})
    os.mkfifo(root / "tables" / "pipe.yaml")
    os.symlink("loop.yaml", root / "tables" / "loop.yaml")
    (root / "tables" / "folder.yaml").mkdir()
    (root / "backfills" / "huge.yaml").write_text("name: huge\n# " + "x" * 2_000_000 + "\n")
    os.symlink("x.sql", root / "sql" / "x.sql")
    os.mkfifo(root / "sql" / "p.sql")
    for name, sql in (("a", "../sql/x.sql"), ("b", "../sql/p.sql")):
        (root / "tables" / f"{name}.yaml").write_text(
            f"name: {name}\nkind: fact\nfields: [{{name: x, type: BIGINT}}]\nsql: {sql}\n")
    code, errors = errors_of(runner, root)
    assert code == 1
    assert errors == [
        "error: backfills/huge.yaml: cannot read file: the file is 2,000,014 bytes, more than the 1,000,000 "
        "a spec or template may have; split it",
        "error: tables/a.yaml:4:6: sql: template file '../sql/x.sql' is a symbolic link loop; "
        "point sql: at a regular file",
        "error: tables/b.yaml:4:6: sql: cannot read template file '../sql/p.sql': not a regular file "
        "(a FIFO, folder or device); give a regular file",
        "error: tables/folder.yaml: cannot read file: not a regular file (a FIFO, folder or device); "
        "give a regular file",
        "error: tables/loop.yaml: cannot read file: Too many levels of symbolic links; give a regular file",
        "error: tables/pipe.yaml: cannot read file: not a regular file (a FIFO, folder or device); "
        "give a regular file",
    ]
    assert not (root / ".backfill").exists()


def test_byte_order_mark_is_stripped(runner: CliRunner, tmp_path: Path) -> None:
    root = project(tmp_path, {})
    for rel in ("sql/fct_order.sql", "project.yaml", "tables/dws_customer.yaml"):
        (root / rel).write_bytes(b"\xef\xbb\xbf" + (root / rel).read_bytes())
    assert errors_of(runner, root) == (0, [])


# ------------------------------------------------------------------ command-line values

def test_show_refuses_dates_that_are_not_real(runner: CliRunner, tmp_path: Path) -> None:
    root = project(tmp_path, {})
    for value, why in (("2026-02-30", "day is out of range for month"),
                       ("garbage", "Invalid isoformat string: 'garbage'"),
                       ("2026-07-01T05:30", "not of the form YYYY-MM-DD")):
        code, errors = errors_of(runner, root, "fct_order", "--date", value, command="show")
        assert (code, errors) == (2, [f"error: --date '{value}' is not a real date or hour ({why}); "
                                      "give YYYY-MM-DD (or YYYY-MM-DDTHH)"])
    assert not (root / ".backfill").exists()


def test_plan_out_into_a_missing_folder_or_onto_a_folder(runner: CliRunner, tmp_path: Path) -> None:
    root = project(tmp_path, {})
    missing = tmp_path / "nowhere" / "plan.json"
    assert errors_of(runner, root, "--out", str(missing), command="plan") == (
        2, [f"error: --out {missing}: the folder {missing.parent} does not exist; create it or choose another"])
    assert errors_of(runner, root, "--out", str(tmp_path), command="plan") == (
        2, [f"error: --out {tmp_path} is a folder; give a file name, e.g. {tmp_path / 'plan.json'}"])
    assert not missing.parent.exists()


def test_init_into_an_unwritable_place(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for target, message in (
            (tmp_path / "afile", f"{tmp_path / 'afile'} exists and is not a folder; choose a new folder"),
            (tmp_path / "afile" / "p", f"cannot write the project into {tmp_path / 'afile' / 'p'}: Not a directory; "
                                       "choose a folder you can write to"),
            (Path("/proc/backfill-project"), "cannot write the project into /proc/backfill-project: "
                                             "No such file or directory; choose a folder you can write to")):
        result = runner.invoke(cli_main.app, ["init", str(target)])
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr
        assert [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")] == [f"error: {message}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_source_folder_that_is_a_symbolic_link_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    root = project(tmp_path, {})
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "data").symlink_to(outside)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    code, errors = errors_of(runner, root)
    assert code == 1
    assert errors == ["error: project.yaml:1:1: sources: source folder 'data' is not a plain folder of the project "
                      "('data' is a symbolic link or leads out of it); templates may only read files inside the "
                      "project: make it a real folder and copy or mount the data there"]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_duckdb_refuses_to_open_where_the_current_directory_would_shadow_a_source_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, {})
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    warehouse = root / ".backfill" / "warehouse.duckdb"
    with pytest.raises(EngineError) as caught:
        DuckDBEngine(warehouse, root, sources=("data",))
    assert str(caught.value) == (
        f"cannot open the DuckDB warehouse {warehouse}: the current directory {elsewhere} has a 'data/' of its own, "
        f"which DuckDB would read instead of the project's source folder {root.resolve() / 'data'}; run backfill "
        "from the project's folder (or from a folder without one)")
    assert not warehouse.exists()
    monkeypatch.chdir(root)  # from the project's folder, or from one without data/, it opens
    DuckDBEngine(warehouse, root, sources=("data",)).close()
    monkeypatch.chdir(tmp_path)
    DuckDBEngine(warehouse, root, sources=("data",)).close()


def test_a_backfill_too_large_to_plan_is_one_error_within_seconds(runner: CliRunner, tmp_path: Path) -> None:
    july = (BASE / "backfills" / "july.yaml").read_text()
    huge = july.replace("{start: 2026-07-01, end: 2026-07-05}", "{start: 0001-01-01, end: 9998-12-31}")
    code, errors = errors_of(runner, project(tmp_path / "a", {"backfills/july.yaml": huge}))
    assert (code, errors) == (1, ["error: backfills/july.yaml:7:17: data_timestamp: covers 3,651,694 days; one "
                                  "backfill covers at most 36,600 (100 years): split it into several backfills"])
    many = july.replace("{start: 2026-07-01, end: 2026-07-05}", "{start: 2000-01-01, end: 2026-01-01}")
    hourly = (BASE / "tables" / "dws_customer.yaml").read_text().replace("kind: aggregate", "kind: aggregate\n"
                                                                           "granularity: hour")
    root = project(tmp_path / "b", {"backfills/july.yaml": many, "tables/dws_customer.yaml": hourly})
    code, errors = errors_of(runner, root)
    assert (code, errors) == (1, ["error: backfills/july.yaml:7:17: data_timestamp: backfill july would plan 237,450 "
                                  "instances "
                                  "(2 table(s)); one backfill plans at most 200,000: narrow data_timestamp or split "
                                  "it into several backfills"])


def test_rendering_every_instance_is_bounded_in_all(runner: CliRunner, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from backfill.sql import bounds

    monkeypatch.setattr(bounds, "MAX_TOTAL_SECONDS", 0.3)
    loop = ("{% set ns = namespace(n=0) %}{% for i in range(20000) %}{% if ds > '2000' %}{% set ns.n = ns.n + 1 %}"
            "{% endif %}{% endfor %}")
    slow = loop + (BASE / "sql" / "fct_order.sql").read_text()
    july = (BASE / "backfills" / "july.yaml").read_text().replace("2026-07-05", "2026-09-30")
    root = project(tmp_path, {"sql/fct_order.sql": slow, "backfills/july.yaml": july})
    code, errors = errors_of(runner, root)
    assert code == 1
    assert len(errors) == 1
    assert errors[0].startswith("error: sql/fct_order.sql:1:1: template exceeds a rendering limit: rendering every "
                                "instance took more than 0.3 s of CPU time in all; make the templates do less work, "
                                "or plan fewer dates (table fct_order, 2026-")


def test_a_spec_file_linked_out_of_the_project_is_not_read(runner: CliRunner, tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("api_key: hunter2\n")
    root = project(tmp_path, {})
    (root / "tables" / "z.yaml").symlink_to(secret)
    code, errors = errors_of(runner, root)
    assert (code, errors) == (1, ["error: tables/z.yaml: tables/z.yaml leads out of the project folder through a "
                                  "symbolic link; keep spec files inside the project"])


def test_checking_every_sql_shape_is_bounded_in_all(runner: CliRunner, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from backfill.sql import bounds

    monkeypatch.setattr(bounds, "MAX_TOTAL_SECONDS", 0.3)
    # a date in a name: every date is its own SQL shape, each checked by sqlglot
    wide = FCT.format("(SELECT CAST({% for i in range(3000) %}1+{% endfor %}1 AS VARCHAR) AS x "
                      "FROM (SELECT 1 AS y) AS t_{{ ds_nodash }})")
    july = (BASE / "backfills" / "july.yaml").read_text().replace("2026-07-05", "2026-09-30")
    root = project(tmp_path, {"sql/fct_order.sql": wide, "backfills/july.yaml": july})
    code, errors = errors_of(runner, root)
    assert code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: sql/fct_order.sql:1:1: checking the SQL of every distinct shape took more than "
                                "0.3 s of CPU time in all; render fewer distinct statements (a date in a name makes "
                                "each date its own), or plan fewer dates (table fct_order, 2026-")
