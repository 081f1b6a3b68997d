"""The compiler: SQL per instance in the engine dialect, sqlglot work once per SQL shape, errors per date."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlglot
import yaml

from backfill.errors import SpecErrors
from backfill.plan.planner import BackfillPlan
from backfill.plan.validate import Validated, validate_project
from backfill.spec.loader import load_project
from backfill.sql.compiler import ProjectCompiler
from backfill.sql.fields import prune_projection

TODAY = date(2026, 7, 20)


def make_project(root: Path, tables: list[dict[str, Any]], backfills: dict[str, dict[str, Any]],
                 **settings: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    proj = {"name": "t", "dialect": "duckdb", "engine": {"type": "duckdb"}, **settings}
    (root / "project.yaml").write_text(yaml.safe_dump(proj, sort_keys=False))
    for sub in ("tables", "backfills"):
        (root / sub).mkdir(exist_ok=True)
    for t in tables:
        (root / "tables" / f"{t['name']}.yaml").write_text(yaml.safe_dump(t, sort_keys=False))
    for key, bf in backfills.items():
        (root / "backfills" / f"{key}.yaml").write_text(yaml.safe_dump(bf, sort_keys=False))
    return root


def table(name: str, sql: str, fields: dict[str, str], kind: str = "fact", pk: tuple[str, ...] = ("id",),
          granularity: str = "day") -> dict[str, Any]:
    return {"name": name, "kind": kind, "granularity": granularity, "primary_key": list(pk),
            "fields": [{"name": f, "type": t} for f, t in fields.items()], "sql_inline": sql}


def validated(root: Path) -> Validated:
    return validate_project(root, today=TODAY)


def only_plan(v: Validated) -> BackfillPlan:
    (plan,) = v.plans
    return plan


# ---------------------------------------------------------------- another dialect, transpiled per instance

HIVE_ROOT = """\
SELECT
    1 AS id,
    CONCAT(CAST(DATE_ADD('{{ ds }}', 1) AS STRING), '|', '{{ ds }}', '|', '{{ ds_add(ds, -1) }}') AS v,
    DATE_FORMAT('{{ ds }}', 'yyyyMMdd') AS w,
    TO_DATE('{{ add_months(ds, -1) }}') AS m,
    NVL(CAST(NULL AS STRING), '${bizdate}') AS b,
    DATEDIFF('{{ ds }}', '{{ ds_add(ds, -30) }}') AS n,
    {{ ds_nodash }} AS k
"""
HIVE_CHILD = """\
SELECT `r`.id, `r`.v
FROM {{ ref('hroot') }} `r`
WHERE `r`.ds = TO_DATE('{{ ds }}') AND `r`.m >= DATE_SUB('{{ ds }}', 40)
  AND `r`.w <> {{ params.tag }}
"""
ROOT_FIELDS = {"id": "BIGINT", "v": "STRING", "w": "STRING", "m": "DATE", "b": "STRING", "n": "INT", "k": "BIGINT"}

MONTH_ENDS = [
    {"start": "2026-01-29", "end": "2026-02-02"},  # January 31st
    {"start": "2026-02-26", "end": "2026-03-02"},  # February 28th
    {"start": "2024-02-27", "end": "2024-03-02"},  # February 29th of a leap year
    {"start": "2026-04-29", "end": "2026-05-01"},
    {"start": "2026-06-30", "end": "2026-07-01"},
    {"start": "2026-08-30", "end": "2026-09-01"},
    {"start": "2026-12-29", "end": "2027-01-02"},  # the year end
    "2026-03-31",
    "2026-10-31",
    "2026-11-30",
]


def _hive_project(tmp_path: Path, **backfill: Any) -> Path:
    tables = [table("hroot", HIVE_ROOT, ROOT_FIELDS, kind="dimension"),
              table("hchild", HIVE_CHILD, {"id": "BIGINT", "v": "STRING"})]
    bf = {"name": "h", "targets": [{"table": "hroot"}, {"table": "hchild"}], "data_timestamp": MONTH_ENDS,
          "params": {"tag": "it's"}, **backfill}
    return make_project(tmp_path / "hive", tables, {"h": bf}, dialect="hive")


def test_another_dialect_is_transpiled_per_instance_like_direct_transpilation(tmp_path: Path) -> None:
    v = validated(_hive_project(tmp_path))
    plan = only_plan(v)
    compiler, project = v.compiler, v.project
    dss = sorted({i.ds for i in plan.instances})
    assert len(dss) >= 30
    assert {"2026-01-31", "2026-02-28", "2024-02-29", "2026-12-31", "2027-01-01", "2026-11-30"} <= set(dss)
    params = {**project.params, "tag": "it's"}
    for inst in plan.instances:
        ts = datetime.fromisoformat(inst.ds)
        rendered = compiler.render(project.tables[inst.table], ts, params).sql
        assert inst.sql == sqlglot.transpile(rendered, read="hive", write="duckdb")[0], inst.id
        # and a compiler that never saw another date agrees
        fresh = ProjectCompiler(project).compile(project.tables[inst.table], ts, params, inst.ds)
        assert not isinstance(fresh, list)
        assert fresh.sql == inst.sql
    # one shape per table, transformed once through placeholders (not the per-instance fallback)
    assert len(compiler._checks) == 2
    assert len(compiler._transforms) == 2 and all(t is not None for t in compiler._transforms.values())


def test_transpiled_values_are_the_instance_dates(tmp_path: Path) -> None:
    plan = only_plan(validated(_hive_project(tmp_path)))
    by_id = {i.id: i for i in plan.instances}
    sql = by_id["h/hroot/2024-03-01"].sql
    # ds twice, ds_add across a leap day, add_months, ${bizdate}, ds_nodash raw
    assert sql.count("'2024-03-01'") == 4
    assert "'2024-02-29'" in sql and "'2024-01-31'" in sql and "'20240301'" in sql and "20240301 AS k" in sql
    assert "'2024-02-01'" in sql  # add_months(2024-03-01, -1)
    assert "STRFTIME" in sql and "DATE_FORMAT" not in sql  # really in DuckDB's dialect
    sql = by_id["h/hroot/2026-03-31"].sql
    assert "'2026-02-28'" in sql  # add_months clamps to the month's last day
    child = by_id["h/hchild/2026-01-31"].sql
    assert '"r"' in child or "r.id" in child.replace('"', "")
    assert "'it''s'" in child  # a hive literal re-quoted for DuckDB
    assert "`" not in child


def test_field_selection_in_another_dialect_equals_pruning_then_transpiling(tmp_path: Path) -> None:
    root = _hive_project(tmp_path, targets=[{"table": "hroot", "fields": ["w", "n"]}])
    v = validated(root)
    for inst in only_plan(v).instances:
        rendered = v.compiler.render(v.project.tables["hroot"], datetime.fromisoformat(inst.ds),
                                     {"tag": "it's"}).sql
        expected = prune_projection(sqlglot.parse_one(rendered, read="hive"), ("id", "w", "n")).sql(dialect="duckdb")
        assert inst.sql == expected
        assert [s.alias_or_name for s in sqlglot.parse_one(inst.sql, read="duckdb").expressions] == ["id", "w", "n"]


def test_same_dialect_sql_is_the_rendered_sql(tmp_path: Path) -> None:
    sql = "SELECT 1 AS id, CAST('{{ ds }}' AS VARCHAR) AS v\n"
    root = make_project(tmp_path / "p", [table("a", sql, {"id": "BIGINT", "v": "VARCHAR"})],
                        {"bf": {"name": "bf", "targets": [{"table": "a"}], "data_timestamp": "2026-07-01"}})
    (inst,) = only_plan(validated(root)).instances
    assert inst.sql == "SELECT 1 AS id, CAST('2026-07-01' AS VARCHAR) AS v\n"


def test_integration_tables_stay_in_duckdb_for_a_postgres_engine(tmp_path: Path) -> None:
    ods = table("ods", "SELECT id, v FROM read_csv({{ source('data/x.csv') }}, header = true)\n"
                       "WHERE CAST(day AS DATE) = DATE '{{ ds }}'\n", {"id": "BIGINT", "v": "VARCHAR"},
                kind="integration")
    fact = table("f", "SELECT o.id, o.v || '{{ ds }}' AS v FROM {{ ref('ods') }} AS o WHERE o.ds = DATE '{{ ds }}'\n",
                 {"id": "BIGINT", "v": "VARCHAR"})
    root = make_project(tmp_path / "p", [ods, fact],
                        {"bf": {"name": "bf", "targets": [{"table": "ods"}, {"table": "f"}],
                                "data_timestamp": "2026-07-01"}},
                        engine={"type": "postgres", "url_env": "NOPE"})
    plan = only_plan(validated(root))
    by_table = {i.table: i.sql for i in plan.instances}
    assert "read_csv('data/x.csv'" in by_table["ods"]
    assert "'2026-07-01'" in by_table["f"]
    assert by_table["f"] == sqlglot.transpile(
        "SELECT o.id, o.v || '2026-07-01' AS v FROM ods AS o WHERE o.ds = DATE '2026-07-01'\n",
        read="duckdb", write="postgres")[0]


# ---------------------------------------------------------------- shapes

def _chain_of_ten() -> list[dict[str, Any]]:
    fields = {"id": "BIGINT", "v": "VARCHAR"}
    tables = [table("t0", "SELECT 1 AS id, CAST('{{ ds }}' AS VARCHAR) AS v\n", fields)]
    for k in range(1, 10):
        tables.append(table(f"t{k}", f"SELECT p.id, p.v FROM {{{{ ref('t{k - 1}') }}}} AS p\n"
                                     "WHERE p.ds BETWEEN DATE '{{ ds_add(ds, -6) }}' AND DATE '{{ ds }}'\n"
                                     "  AND p.v <> '{{ ds_nodash }}' AND p.v <> '${yyyymmdd-1}'\n", fields))
    return tables


def test_ten_tables_over_a_year_check_one_shape_per_table(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", _chain_of_ten(), {"year": {
        "name": "year", "targets": [{"table": f"t{k}"} for k in range(10)], "groups": 12,
        "data_timestamp": {"start": "2025-01-01", "end": "2025-12-31"}}})
    v = validated(root)
    plan = only_plan(v)
    assert len(plan.instances) == 3650
    assert len(v.compiler._checks) == 10  # one sqlglot check per (table, shape), not per instance
    by_id = {i.id: i for i in plan.instances}
    sql = by_id["year/t3/2025-03-01"].sql
    assert "'2025-02-23'" in sql and "'2025-03-01'" in sql and "'20250301'" in sql and "'20250228'" in sql


def test_a_date_dependent_branch_broken_on_one_date_is_caught_and_names_that_date(tmp_path: Path) -> None:
    sql = ("{% if ds == '2026-03-07' %}\n"
           "SELECT p.no_such_column AS id, p.v FROM {{ ref('a') }} AS p WHERE p.ds = DATE '{{ ds }}'\n"
           "{% else %}\n"
           "SELECT p.id, p.v FROM {{ ref('a') }} AS p WHERE p.ds = DATE '{{ ds }}'\n"
           "{% endif %}\n")
    fields = {"id": "BIGINT", "v": "VARCHAR"}
    tables = [table("a", "SELECT 1 AS id, CAST('{{ ds }}' AS VARCHAR) AS v\n", fields), table("b", sql, fields)]
    root = make_project(tmp_path / "p", tables, {"bf": {
        "name": "bf", "targets": [{"table": "a"}, {"table": "b"}],
        "data_timestamp": {"start": "2026-01-01", "end": "2026-12-31"}}})
    with pytest.raises(SpecErrors) as info:
        validated(root)
    (err,) = info.value.errors
    assert err.ds == "2026-03-07"
    assert err.table == "b"
    assert "2026-03-07" in err.message and "no_such_column" in err.message
    assert err.file == "tables/b.yaml"
    assert err.line is not None and err.line > 1
    assert "no_such_column" in err.detail

    # the same project is fine without that date
    bf = yaml.safe_load((root / "backfills" / "bf.yaml").read_text())
    bf["data_timestamp"] = [{"start": "2026-01-01", "end": "2026-03-06"}, {"start": "2026-03-08", "end": "2026-12-31"}]
    (root / "backfills" / "bf.yaml").write_text(yaml.safe_dump(bf))
    assert len(only_plan(validated(root)).instances) == 2 * 364


def test_a_date_dependent_template_error_names_its_date(tmp_path: Path) -> None:
    sql = ("SELECT 1 AS id,\n"
           "{% if data_timestamp.day == 31 %}{{ nope }}{% else %}'x'{% endif %} AS v\n")
    root = make_project(tmp_path / "p", [table("a", sql, {"id": "BIGINT", "v": "VARCHAR"})], {"bf": {
        "name": "bf", "targets": [{"table": "a"}], "data_timestamp": {"start": "2026-04-01", "end": "2026-05-31"}}})
    with pytest.raises(SpecErrors) as info:
        validated(root)
    (err,) = info.value.errors
    assert err.ds == "2026-05-31"
    assert "nope" in err.message


def test_compile_errors_name_table_and_ds_directly(tmp_path: Path) -> None:
    sql = "SELECT 1 AS id, CAST('{{ ds }}' AS VARCHAR) AS vv\n"
    root = make_project(tmp_path / "p", [table("a", sql, {"id": "BIGINT", "v": "VARCHAR"})], {})
    project = load_project(root)
    compiler = ProjectCompiler(project)
    out = compiler.compile(project.tables["a"], datetime(2026, 7, 1), {}, "2026-07-01")
    assert isinstance(out, list)
    assert any("(table a, 2026-07-01)" in e.message for e in out)
    assert all(e.ds == "2026-07-01" for e in out)


def test_fingerprint_changes_with_the_sql_and_the_declared_schema(tmp_path: Path) -> None:
    sql = "SELECT 1 AS id, CAST('{{ ds }}' AS VARCHAR) AS v\n"
    root = make_project(tmp_path / "p", [table("a", sql, {"id": "BIGINT", "v": "VARCHAR"})], {})
    project = load_project(root)
    c = ProjectCompiler(project)
    t = project.tables["a"]
    one = c.compile(t, datetime(2026, 7, 1), {}, "2026-07-01")
    two = c.compile(t, datetime(2026, 7, 2), {}, "2026-07-02")
    again = ProjectCompiler(project).compile(t, datetime(2026, 7, 1), {}, "2026-07-01")
    assert not isinstance(one, list) and not isinstance(two, list) and not isinstance(again, list)
    assert one.fingerprint != two.fingerprint
    assert one.fingerprint == again.fingerprint
    root2 = make_project(tmp_path / "q", [table("a", sql, {"id": "BIGINT", "v": "TEXT"})], {})
    p2 = load_project(root2)
    other = ProjectCompiler(p2).compile(p2.tables["a"], datetime(2026, 7, 1), {}, "2026-07-01")
    assert not isinstance(other, list)
    assert other.sql == one.sql and other.fingerprint != one.fingerprint


@pytest.mark.parametrize("dialect", ["hive", "spark", "postgres"])
def test_many_date_forms_transpile_like_direct_transpilation(tmp_path: Path, dialect: str) -> None:
    sql = ("SELECT 1 AS id, CONCAT('{{ ds }}', '{{ ds_nodash }}', '{{ ds_add(ds_nodash, 1) }}',\n"
           "  '{{ add_months(ds, 1) }}', '{{ date_format(ds, \"%d.%m.%Y\") }}', '{{ data_timestamp }}',\n"
           "  '$[yyyy-mm-dd hh24:mi:ss]', '${yyyy-mm-dd}', '{{ ds }}') AS v\n")
    root = make_project(tmp_path / "p", [table("a", sql, {"id": "BIGINT", "v": "VARCHAR"})], {"bf": {
        "name": "bf", "targets": [{"table": "a"}], "data_timestamp": MONTH_ENDS}}, dialect=dialect)
    v = validated(root)
    t = v.project.tables["a"]
    for inst in only_plan(v).instances:
        rendered = v.compiler.render(t, datetime.fromisoformat(inst.ds), {}).sql
        assert inst.sql == sqlglot.transpile(rendered, read=dialect, write="duckdb")[0]
    d = datetime(2026, 1, 31)
    assert (d + timedelta(days=1)).strftime("%Y%m%d") in next(
        i.sql for i in only_plan(v).instances if i.ds == "2026-01-31")


def test_placeholder_collisions_and_many_slots_fall_back_to_direct_transpilation(tmp_path: Path) -> None:
    fields = {"id": "BIGINT", "v": "STRING", "w": "STRING"}
    # '1600-..' is the placeholder of slot 0: the template holds it already
    collide = table("c", "SELECT 1 AS id, CONCAT('1600-07-01', '{{ ds }}') AS v, TO_DATE('{{ ds }}') AS w\n", fields)
    # more than 100 date slots
    many = table("m", "SELECT 1 AS id, CONCAT(" + ", ".join(["'{{ ds }}'"] * 101) + ") AS v, "
                 "CAST('{{ ds_nodash }}' AS STRING) AS w\n", fields)
    # a date rendered unquoted is reformatted by sqlglot (2026-07-01 is a subtraction)
    bare = table("b", "SELECT 1 AS id, CAST({{ ds }} AS STRING) AS v, CAST({{ hour }} AS STRING) AS w\n", fields,
                 granularity="hour")
    root = make_project(tmp_path / "p", [collide, many, bare], {"bf": {
        "name": "bf", "targets": [{"table": "c"}, {"table": "m"}, {"table": "b"}],
        "data_timestamp": ["2026-07-01", "2026-07-31"]}}, dialect="hive")
    v = validated(root)
    instances = only_plan(v).instances
    assert len(instances) == 2 + 2 + 48
    for inst in instances:
        t = v.project.tables[inst.table]
        ts = datetime.strptime(inst.ds, "%Y-%m-%dT%H") if t.hourly else datetime.fromisoformat(inst.ds)
        rendered = v.compiler.render(t, ts, {}).sql
        assert inst.sql == sqlglot.transpile(rendered, read="hive", write="duckdb")[0], inst.id
    by_id = {i.id: i.sql for i in instances}
    assert "'1600-07-01'" in by_id["bf/c/2026-07-31"] and "'2026-07-31'" in by_id["bf/c/2026-07-31"]
    assert by_id["bf/m/2026-07-31"].count("'2026-07-31'") == 101
    assert "2026 - 7 - 31" in by_id["bf/b/2026-07-31T05"] or "2026 - 07 - 31" in by_id["bf/b/2026-07-31T05"]


def test_the_shape_cache_keeps_no_syntax_tree_and_field_selection_still_prunes(tmp_path: Path) -> None:
    # a tree per SQL shape kept 2 GB for a template whose every date is its own shape (a date in a name)
    root = _hive_project(tmp_path, targets=[{"table": "hroot", "fields": ["w", "n"]}])
    v = validated(root)
    assert v.compiler._checks and all(c.tree is None for c in v.compiler._checks.values())
    for inst in only_plan(v).instances:  # the signatures read the shape again where they need it
        assert [s.alias_or_name for s in sqlglot.parse_one(inst.sql, read="duckdb").expressions] == ["id", "w", "n"]
