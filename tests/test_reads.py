"""Read sets inferred from SQL (backfill/sql/reads.py): predicates on partition columns per table
reference, through aliases, CTEs, subqueries, joins and unions, evaluated to partition ranges."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.optimizer.qualify import qualify

from backfill.sql.reads import as_ranges, evaluate, infer_reads

SCHEMA: dict[str, object] = {"ods": {"ds": "DATE", "id": "BIGINT", "v": "BIGINT"},
          "dim": {"ds": "DATE", "id": "BIGINT", "w": "BIGINT"},
          "hr": {"ds": "TIMESTAMP", "id": "BIGINT", "v": "BIGINT"}}
HOURLY = {"hr"}


def reads(sql: str, fill: dict[str, str] | None = None) -> dict[str, object]:
    tree = sqlglot.parse_one(sql, read="duckdb")
    tree = qualify(tree, schema=SCHEMA, dialect="duckdb", quote_identifiers=False, identify=False,
                   validate_qualify_columns=False)
    found = infer_reads(tree, {t: "ds" for t in SCHEMA})

    def put_back(text: str) -> str:
        for k, v in (fill or {}).items():
            text = text.replace(k, v)
        return text

    return {t: as_ranges(evaluate(f, t in HOURLY, put_back), t in HOURLY) for t, f in found.items()}


def one(lo: str | None, hi: str | None) -> tuple[tuple[str | None, str | None], ...]:
    return ((lo, hi),)


CASES = [
    ("equality with a DATE literal", "SELECT id FROM ods WHERE ds = DATE '2026-07-01'",
     {"ods": one("2026-07-01", "2026-07-01")}),
    ("a string compared with the date", "SELECT id FROM ods WHERE ds = '2026-07-01'",
     {"ods": one("2026-07-01", "2026-07-01")}),
    ("a yyyymmdd string", "SELECT id FROM ods WHERE ds = '20260701'", {"ods": one("2026-07-01", "2026-07-01")}),
    ("a cast literal", "SELECT id FROM ods WHERE ds = CAST('2026-07-01' AS DATE)",
     {"ods": one("2026-07-01", "2026-07-01")}),
    ("literal on the left", "SELECT id FROM ods WHERE DATE '2026-07-03' >= ds AND '2026-07-01' < ds",
     {"ods": one("2026-07-02", "2026-07-03")}),
    ("between", "SELECT id FROM ods WHERE ds BETWEEN DATE '2026-06-25' AND DATE '2026-07-01'",
     {"ods": one("2026-06-25", "2026-07-01")}),
    ("in", "SELECT id FROM ods WHERE ds IN ('2026-07-01', DATE '2026-07-02', '2026-07-09')",
     {"ods": (("2026-07-01", "2026-07-02"), ("2026-07-09", "2026-07-09"))}),
    ("half-open below", "SELECT id FROM ods WHERE ds < DATE '2026-07-01'", {"ods": one(None, "2026-06-30")}),
    ("half-open above", "SELECT id FROM ods WHERE ds > DATE '2026-07-01'", {"ods": one("2026-07-02", None)}),
    ("or of two windows", "SELECT id FROM ods WHERE (ds >= '2026-07-01' AND ds <= '2026-07-02') "
     "OR ds = '2026-06-01'", {"ods": (("2026-06-01", "2026-06-01"), ("2026-07-01", "2026-07-02"))}),
    ("contradiction reads nothing", "SELECT id FROM ods WHERE ds = '2026-07-01' AND ds = '2026-07-02'",
     {"ods": ()}),
    ("no predicate reads all", "SELECT id FROM ods", {"ods": "all"}),
    ("another column only reads all", "SELECT id FROM ods WHERE v > 3", {"ods": "all"}),
    ("or with another column reads all", "SELECT id FROM ods WHERE ds = '2026-07-01' OR v > 3", {"ods": "all"}),
    ("not reads all", "SELECT id FROM ods WHERE NOT ds = '2026-07-01'", {"ods": "all"}),
    ("a timestamp bound on a daily column", "SELECT id FROM ods WHERE ds >= '2026-07-01 12:00:00' "
     "AND ds < '2026-07-03 00:00:00'", {"ods": one("2026-07-02", "2026-07-02")}),
    ("interval arithmetic", "SELECT id FROM ods WHERE ds BETWEEN DATE '2026-07-07' - INTERVAL 6 DAY "
     "AND DATE '2026-07-07'", {"ods": one("2026-07-01", "2026-07-07")}),
    ("aliases and a join", "SELECT o.id FROM ods AS o JOIN dim AS d ON d.id = o.id AND d.ds = '2026-07-01' "
     "WHERE o.ds = '2026-07-02'", {"ods": one("2026-07-02", "2026-07-02"), "dim": one("2026-07-01", "2026-07-01")}),
    ("a left join's ON restricts only the joined table", "SELECT o.id FROM ods AS o LEFT JOIN dim AS d "
     "ON d.id = o.id AND o.ds = '2026-07-01' AND d.ds = '2026-07-05'",
     {"ods": "all", "dim": one("2026-07-05", "2026-07-05")}),
    ("ds = ds equality carries the predicate", "SELECT o.id FROM ods AS o JOIN dim AS d "
     "ON d.id = o.id AND d.ds = o.ds WHERE o.ds = '2026-07-01'",
     {"ods": one("2026-07-01", "2026-07-01"), "dim": one("2026-07-01", "2026-07-01")}),
    ("inside a CTE", "WITH w AS (SELECT id FROM ods WHERE ds BETWEEN '2026-07-01' AND '2026-07-07') "
     "SELECT id FROM w", {"ods": one("2026-07-01", "2026-07-07")}),
    ("outside a CTE, on its partition column", "WITH w AS (SELECT ds, id FROM ods) "
     "SELECT id FROM w WHERE w.ds = '2026-07-03'", {"ods": one("2026-07-03", "2026-07-03")}),
    ("outside a subquery, combined with its own", "SELECT s.id FROM (SELECT ds, id FROM ods "
     "WHERE ds > '2026-06-30') AS s WHERE s.ds <= '2026-07-02'", {"ods": one("2026-07-01", "2026-07-02")}),
    ("not through a window", "WITH w AS (SELECT ds, id, LAG(v) OVER (PARTITION BY id ORDER BY ds) AS p "
     "FROM ods) SELECT id FROM w WHERE w.ds = '2026-07-03'", {"ods": "all"}),
    ("not through QUALIFY", "SELECT f.id FROM (SELECT o.id, o.ds FROM ods AS o QUALIFY row_number() OVER "
     "(PARTITION BY o.id ORDER BY o.ds) = 1) AS f WHERE f.ds BETWEEN '2026-07-01' AND '2026-07-07'",
     {"ods": "all"}),
    ("not through DISTINCT ON", "SELECT f.id FROM (SELECT DISTINCT ON (o.id) o.id, o.ds FROM ods AS o "
     "ORDER BY o.id, o.ds) AS f WHERE f.ds = '2026-07-03'", {"ods": "all"}),
    ("through a plain DISTINCT", "SELECT f.id FROM (SELECT DISTINCT o.id, o.ds FROM ods AS o) AS f "
     "WHERE f.ds = '2026-07-03'", {"ods": one("2026-07-03", "2026-07-03")}),
    ("through a GROUP BY on the partition column", "SELECT f.id FROM (SELECT o.id, o.ds, sum(o.v) AS v "
     "FROM ods AS o GROUP BY o.id, o.ds) AS f WHERE f.ds = '2026-07-03'", {"ods": one("2026-07-03", "2026-07-03")}),
    ("not through an aggregate of the partition column", "SELECT f.id FROM (SELECT o.id, min(o.ds) AS ds "
     "FROM ods AS o GROUP BY o.id) AS f WHERE f.ds = '2026-07-03'", {"ods": "all"}),
    ("a CTE used twice: the union of its uses", "WITH w AS (SELECT ds, id FROM ods) SELECT a.id FROM w AS a "
     "JOIN w AS b ON a.id = b.id WHERE a.ds = '2026-07-03' AND b.ds = '2026-07-01'",
     {"ods": (("2026-07-01", "2026-07-01"), ("2026-07-03", "2026-07-03"))}),
    ("a subquery in WHERE", "SELECT id FROM ods WHERE ds = '2026-07-02' AND id IN "
     "(SELECT id FROM dim WHERE ds = '2026-07-01')",
     {"ods": one("2026-07-02", "2026-07-02"), "dim": one("2026-07-01", "2026-07-01")}),
    ("union branches", "SELECT id FROM ods WHERE ds = '2026-07-01' UNION ALL SELECT id FROM dim "
     "WHERE ds < '2026-07-01'", {"ods": one("2026-07-01", "2026-07-01"), "dim": one(None, "2026-06-30")}),
    ("the same table twice", "SELECT a.id FROM ods AS a JOIN ods AS b ON a.id = b.id "
     "WHERE a.ds = '2026-07-07' AND b.ds = '2026-07-01'",
     {"ods": (("2026-07-01", "2026-07-01"), ("2026-07-07", "2026-07-07"))}),
    ("an hourly range", "SELECT id FROM hr WHERE ds >= TIMESTAMP '2026-07-01 05:00:00' "
     "AND ds < TIMESTAMP '2026-07-01 08:00:00'", {"hr": one("2026-07-01T05", "2026-07-01T07")}),
    ("an hourly table cast to DATE", "SELECT id FROM hr WHERE CAST(ds AS DATE) = DATE '2026-07-01'",
     {"hr": one("2026-07-01T00", "2026-07-01T23")}),
    ("an hourly table, a day before by interval", "SELECT id FROM hr WHERE ds::DATE = DATE '2026-07-02' "
     "- INTERVAL 1 DAY", {"hr": one("2026-07-01T00", "2026-07-01T23")}),
    ("an hour with a DATE literal: midnight", "SELECT id FROM hr WHERE ds = DATE '2026-07-01'",
     {"hr": one("2026-07-01T00", "2026-07-01T00")}),
]


@pytest.mark.parametrize(("sql", "want"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_read_set(sql: str, want: dict[str, object]) -> None:
    assert reads(sql) == want


def test_placeholders_are_filled_per_instance() -> None:
    sql = "SELECT id FROM ods WHERE ds BETWEEN DATE '1600-07-01' AND DATE '1604-07-07'"
    assert reads(sql, {"1600-07-01": "2026-06-25", "1604-07-07": "2026-07-01"}) == \
        {"ods": one("2026-06-25", "2026-07-01")}
    assert reads(sql, {"1600-07-01": "2026-12-26", "1604-07-07": "2027-01-01"}) == \
        {"ods": one("2026-12-26", "2027-01-01")}


def test_an_unparseable_value_reads_all() -> None:
    assert reads("SELECT id FROM ods WHERE ds = 'yesterday'") == {"ods": "all"}


def test_the_compiler_infers_once_per_shape_and_evaluates_per_date() -> None:
    from datetime import datetime
    from pathlib import Path

    from backfill.spec.loader import load_project
    from backfill.sql.compiler import ProjectCompiler

    project = load_project(Path(__file__).resolve().parents[1] / "specs")
    compiler = ProjectCompiler(project)
    dws = project.tables["dws_all"]
    seen = []
    for day in (1, 2, 31):
        ts = datetime(2026, 7, day)
        compiled = compiler.compile(dws, ts, project.params, ts.strftime("%Y-%m-%d"))
        assert not isinstance(compiled, list)
        seen.append(dict(compiled.read_set))
    assert seen[0] == {"ods_order": one("2026-06-25", "2026-07-01"),
                       "fct_order_buy_di": one("2026-07-01", "2026-07-01")}
    assert seen[2] == {"ods_order": one("2026-07-25", "2026-07-31"),
                       "fct_order_buy_di": one("2026-07-31", "2026-07-31")}
    assert len([k for k in compiler._read_sets._shapes if k[0] == "dws_all"]) == 1


@pytest.mark.parametrize("sql", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_the_fast_path_of_conjunctions_agrees_with_the_general_one(sql: str) -> None:
    from backfill.sql.reads import conjunction, conjunction_ranges

    tree = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=SCHEMA, dialect="duckdb", quote_identifiers=False,
                   identify=False, validate_qualify_columns=False)
    for table, formula in infer_reads(tree, {t: "ds" for t in SCHEMA}).items():
        cmps = conjunction(formula)
        if cmps is not None:
            hourly = table in HOURLY
            assert conjunction_ranges([(c, c.text) for c in cmps], hourly) == \
                as_ranges(evaluate(formula, hourly, lambda s: s), hourly), table
