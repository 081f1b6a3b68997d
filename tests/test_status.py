"""`backfill status` from the ledger alone: current, stale and missing partitions; schema v1 -> v2.

No Prefect here: partitions are recorded straight into a SQLite ledger, as the executor records them.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest_pg import PgServer, pg_server  # noqa: F401  (fixture)
from typer.testing import CliRunner, Result

from backfill.cli.main import _register_optional, app
from backfill.run.records import ApplyRecords
from backfill.spec.loader import load_project
from backfill.state.fingerprints import template_fingerprint
from backfill.state.ledger import SCHEMA_VERSION, Ledger

_register_optional()

JULY = [f"2026-07-{d:02d}" for d in range(1, 15)]
INTEGRATION = [(date(2026, 6, 25) + timedelta(days=i)).isoformat() for i in range(20)]


def status(project: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["status", "--project", str(project), *args])


def status_json(project: Path, *args: str) -> dict[str, Any]:
    result = status(project, "--json", *args)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def by_table(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["table"]: t for t in doc["tables"]}


def state_db(project: Path) -> Path:
    return project / ".backfill" / "state.db"


def open_ledger(project: Path) -> Ledger:
    state_db(project).parent.mkdir(parents=True, exist_ok=True)
    return Ledger.open(f"sqlite:///{state_db(project)}")


def record(project: Path, table: str, dates: list[str], tfp: str | None = "current",
           fields: tuple[str, ...] = ("*",), sql_fp: str = "sqlfp") -> None:
    """Record partitions as the executor does (template fingerprint 'current' = the table's current one)."""
    if tfp == "current":
        p = load_project(project)
        tfp = template_fingerprint(p.tables[table], p)
    ledger = open_ledger(project)
    try:
        ledger.apply_updates([{"id": f"manual/{table}/{ds}",
                               "partitions": [(table, ds, f, sql_fp, tfp) for f in fields]} for ds in dates])
    finally:
        ledger.close()


# --- no ledger yet --------------------------------------------------------------------------------

def test_without_a_ledger_everything_expected_is_missing_and_no_ledger_is_created(tutorial: Path) -> None:
    doc = status_json(tutorial)
    tables = by_table(doc)
    assert sorted(tables) == sorted(["dim_customer", "dim_products", "dws_all", "fct_order_buy_di", "ods_customer",
                                     "ods_order", "ods_product"])
    assert tables["dim_products"] == {"table": "dim_products", "expected": 14, "current": 0, "stale": 0,
                                      "missing": 14, "dates": {d: "missing" for d in JULY}}
    assert list(tables["ods_order"]["dates"]) == INTEGRATION
    assert not state_db(tutorial).exists()
    assert not (tutorial / ".backfill").exists()

    text = status(tutorial)
    assert text.exit_code == 0, text.output
    assert "no ledger yet" in text.stdout
    assert "7 table(s):" in text.stdout and "116 expected" in text.stdout and "116 missing" in text.stdout
    assert not state_db(tutorial).exists()


def test_unknown_table_is_a_one_line_error(tutorial: Path) -> None:
    result = status(tutorial, "dim_prodcts")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: no table 'dim_prodcts' in tables/; did you mean 'dim_products'?"]
    assert status(tutorial, "--from", "2026-13-01").exit_code == 2


# --- current, stale, missing ----------------------------------------------------------------------

def test_current_stale_and_missing_from_the_recorded_template_fingerprints(tutorial: Path) -> None:
    record(tutorial, "dim_products", JULY[:10])
    record(tutorial, "dim_products", JULY[10:12], tfp="0123456789abcdef")  # written by an older template
    record(tutorial, "ods_product", INTEGRATION)
    doc = status_json(tutorial)
    dim = by_table(doc)["dim_products"]
    assert (dim["expected"], dim["current"], dim["stale"], dim["missing"]) == (14, 10, 2, 2)
    assert dim["dates"] == {**{d: "current" for d in JULY[:10]}, **{d: "stale" for d in JULY[10:12]},
                            **{d: "missing" for d in JULY[12:]}}
    assert by_table(doc)["ods_product"]["current"] == 20

    # editing the template makes every recorded partition of that table stale, and only those
    sql = tutorial / "sql" / "dim_products.sql"
    sql.write_text(sql.read_text().replace("    p.category,", "    TRIM(p.category) AS category,"))
    after = by_table(status_json(tutorial))
    assert after["dim_products"]["dates"] == {**{d: "stale" for d in JULY[:12]}, **{d: "missing" for d in JULY[12:]}}
    assert after["ods_product"]["current"] == 20
    # a change of the declared shape (a field type) is a change too, a description is not
    spec = tutorial / "tables" / "ods_product.yaml"
    spec.write_text(spec.read_text().replace("description: display name", "description: the display name"))
    assert by_table(status_json(tutorial))["ods_product"]["current"] == 20
    spec.write_text(spec.read_text().replace("{name: product_name, type: VARCHAR", "{name: product_name, type: TEXT"))
    assert by_table(status_json(tutorial))["ods_product"]["stale"] == 20

    one = status_json(tutorial, "dim_products")
    assert [t["table"] for t in one["tables"]] == ["dim_products"]
    assert one == status_json(tutorial, "dim_products")  # deterministic


def test_dates_the_ledger_records_beyond_the_specs_are_shown(tutorial: Path) -> None:
    record(tutorial, "dws_all", ["2026-05-31"])
    dws = by_table(status_json(tutorial))["dws_all"]
    assert dws["expected"] == 15 and dws["current"] == 1
    assert list(dws["dates"])[0] == "2026-05-31"


def test_field_rows_and_null_fingerprints(tutorial: Path) -> None:
    p = load_project(tutorial)
    fields = p.tables["dws_all"].field_names
    # whole table written by an older template, then every field rewritten by the current one: current
    record(tutorial, "dws_all", JULY[:1], tfp="old0000000000000")
    record(tutorial, "dws_all", JULY[:1], fields=fields)
    # whole table current, one field rewritten by an older template: stale
    record(tutorial, "dws_all", JULY[1:2])
    record(tutorial, "dws_all", JULY[1:2], tfp="old0000000000000", fields=(fields[-1],))
    # whole table written by an old template, one field rewritten now: the other fields are still old
    record(tutorial, "dws_all", JULY[2:3], tfp="old0000000000000")
    record(tutorial, "dws_all", JULY[2:3], fields=(fields[-1],))
    # written before schema v2: no template fingerprint, unknown, shown current
    record(tutorial, "dws_all", JULY[3:4], tfp=None)
    dates = by_table(status_json(tutorial))["dws_all"]["dates"]
    assert [dates[d] for d in JULY[:5]] == ["current", "stale", "stale", "current", "missing"]


def test_from_and_to_limit_the_dates(tutorial: Path) -> None:
    record(tutorial, "dim_products", JULY)
    doc = status_json(tutorial, "--from", "2026-07-03", "--to", "2026-07-05")
    tables = by_table(doc)
    assert tables["dim_products"]["dates"] == {"2026-07-03": "current", "2026-07-04": "current",
                                               "2026-07-05": "current"}
    assert list(tables["ods_order"]["dates"]) == ["2026-07-03", "2026-07-04", "2026-07-05"]
    assert status(tutorial, "--from", "2026-07-05", "--to", "2026-07-01").exit_code == 1


def test_the_heat_map(tutorial: Path) -> None:
    record(tutorial, "dim_products", JULY[:10])
    record(tutorial, "dim_products", JULY[10:12], tfp="0123456789abcdef")
    result = status(tutorial, "dim_products")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    head = next(line for line in lines if line.startswith("dim_products"))
    assert "14 expected" in head and "10 current" in head and "2 stale" in head and "2 missing" in head
    row = next(line for line in lines if "2026-07" in line)
    assert row.split("2026-07", 1)[1].strip() == "█" * 10 + "▒" * 2 + "·" * 2
    assert "█ current" in result.stdout and "▒ stale" in result.stdout and "· missing" in result.stdout


# --- expected dates: downstream scope, without rendering per date --------------------------------

def _downstream_spec(project: Path) -> None:
    (project / "backfills" / "products_downstream.yaml").write_text(
        "name: products_downstream\n"
        "targets:\n  - table: dim_products\n"
        "scope: downstream\n"
        "data_timestamp: {start: 2026-08-01, end: 2026-08-03}\n")


def test_downstream_scope_adds_the_dependent_tables_without_rendering_per_date(
        tutorial: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backfill.sql.compiler import ProjectCompiler

    _downstream_spec(tutorial)
    # drop a declared depends_on: that table's template is rendered once to find what it reads
    spec = tutorial / "tables" / "fct_order_buy_di.yaml"
    spec.write_text("\n".join(line for line in spec.read_text().splitlines() if not line.startswith("depends_on")))
    calls: list[str] = []
    original = ProjectCompiler.compile

    def counting(self: ProjectCompiler, table: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(table.name)
        return original(self, table, *args, **kwargs)

    monkeypatch.setattr(ProjectCompiler, "compile", counting)
    tables = by_table(status_json(tutorial))
    august = ["2026-08-01", "2026-08-02", "2026-08-03"]
    for name in ("dim_products", "fct_order_buy_di", "dws_all"):
        assert list(tables[name]["dates"])[-3:] == august, name
        assert tables[name]["expected"] == 17
    for name in ("dim_customer", "ods_product", "ods_order", "ods_customer"):
        assert not set(august) & set(tables[name]["dates"]), name
    assert len(calls) == len(set(calls))  # at most one render per table, never one per date
    # declared depends_on, or (the integration tables) a template naming no table: not rendered
    assert calls == ["fct_order_buy_di"]


# --- keeping status right after apply finds SQL unchanged ----------------------------------------

def test_apply_refreshes_the_template_fingerprint_of_partitions_whose_sql_did_not_change(tutorial: Path) -> None:
    from backfill.plan.workspace import build_plans

    ledger = open_ledger(tutorial)
    try:
        plans = build_plans(tutorial, ledger=ledger).plans
        # every instance recorded as written with its planned SQL, but by an "older" template
        ledger.apply_updates([{"id": i.id, "partitions": [(i.table, i.ds, "*", i.table_fingerprint, "old0")]}
                              for plan in plans for i in plan.instances])
        assert by_table(status_json(tutorial))["dim_products"]["stale"] == 14
        plans = build_plans(tutorial, ledger=ledger).plans
        assert {i.action for plan in plans for i in plan.instances} == {"done"}
        # what apply does after planning: the SQL is the same, so these partitions are current
        assert ApplyRecords(ledger).refresh_done(load_project(tutorial), plans) == 116
        assert ApplyRecords(ledger).refresh_done(load_project(tutorial), plans) == 0
    finally:
        ledger.close()
    doc = status_json(tutorial)
    assert all(t["current"] == t["expected"] for t in doc["tables"])


# --- the ledger schema: v1 -> v2 -------------------------------------------------------------------

def test_a_v1_ledger_is_migrated_and_its_partitions_count_as_current(tutorial: Path) -> None:
    ledger = open_ledger(tutorial)
    ledger.close()
    con = sqlite3.connect(state_db(tutorial))
    con.execute("ALTER TABLE bf_partitions DROP COLUMN template_fingerprint")
    con.execute("ALTER TABLE bf_instances DROP COLUMN template_fingerprint")
    con.execute("UPDATE bf_meta SET value = '1' WHERE key = 'schema_version'")
    con.execute("INSERT INTO bf_partitions (table_name, ds, field, fingerprint, instance_id, written_at) "
                "VALUES ('dim_products', '2026-07-01', '*', 'abc', 'x/dim_products/2026-07-01', 0)")
    con.commit()
    con.close()

    dates = by_table(status_json(tutorial))["dim_products"]["dates"]  # opening it migrates it
    assert dates["2026-07-01"] == "current" and dates["2026-07-02"] == "missing"
    ledger = open_ledger(tutorial)
    try:
        assert ledger.schema_version == SCHEMA_VERSION == 2
        with ledger.engine.connect() as conn:
            for table in ("bf_partitions", "bf_instances"):
                cols = {c["name"] for c in sa.inspect(conn).get_columns(table)}
                assert "template_fingerprint" in cols, table
        assert ledger.partition_states("dim_products") == [("dim_products", "2026-07-01", "*", None)]
    finally:
        ledger.close()
    Ledger.open(f"sqlite:///{state_db(tutorial)}").close()  # opening a v2 ledger again changes nothing


def test_a_newer_ledger_is_refused(tutorial: Path) -> None:
    open_ledger(tutorial).close()
    con = sqlite3.connect(state_db(tutorial))
    con.execute("UPDATE bf_meta SET value = '3' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    result = status(tutorial)
    assert result.exit_code == 1
    assert "schema version 3, newer than this backfill (2)" in result.stderr


# --- hourly tables ---------------------------------------------------------------------------------

def test_an_hourly_table_has_one_partition_per_hour_and_a_day_cell_shows_its_worst_hour(tutorial: Path) -> None:
    (tutorial / "tables" / "orders_hourly.yaml").write_text(
        "name: orders_hourly\nkind: fact\ngranularity: hour\nprimary_key: [id]\n"
        "fields: [{name: id, type: BIGINT}]\nsql_inline: SELECT 1 AS id\n")
    (tutorial / "backfills" / "hourly.yaml").write_text(
        "name: hourly\ntargets: [{table: orders_hourly}]\n"
        "data_timestamp: {start: 2026-07-01, end: 2026-07-02}\n")
    day1 = [f"2026-07-01T{h:02d}" for h in range(24)]
    day2 = [f"2026-07-02T{h:02d}" for h in range(24)]
    record(tutorial, "orders_hourly", day1)
    record(tutorial, "orders_hourly", day2[:23])
    hourly = by_table(status_json(tutorial))["orders_hourly"]
    assert (hourly["expected"], hourly["current"], hourly["missing"]) == (48, 47, 1)
    assert list(hourly["dates"]) == day1 + day2 and hourly["dates"]["2026-07-02T23"] == "missing"
    assert by_table(status_json(tutorial, "--from", "2026-07-02", "--to", "2026-07-02"))["orders_hourly"][
        "expected"] == 24
    result = status(tutorial, "orders_hourly")
    row = next(line for line in result.stdout.splitlines() if "2026-07" in line)
    assert row.split("2026-07", 1)[1].strip() == "█·"
    assert "worst hour" in result.stdout


def test_the_v1_to_v2_migration_and_grouped_reads_on_postgresql(pg_server: PgServer) -> None:  # noqa: F811
    schema = pg_server.new_schema()
    url = "postgresql+psycopg://" + pg_server.url.split("://", 1)[1]
    Ledger.open(url, schema).close()
    for table in ("bf_partitions", "bf_instances"):
        pg_server.conn.execute(f'ALTER TABLE "{schema}".{table} DROP COLUMN template_fingerprint')
    pg_server.conn.execute(f"UPDATE \"{schema}\".bf_meta SET value = '1' WHERE key = 'schema_version'")
    pg_server.conn.execute(f'INSERT INTO "{schema}".bf_partitions (table_name, ds, field, fingerprint, instance_id, '
                           "written_at) VALUES ('t', '2026-07-01', '*', 'abc', 'b/t/2026-07-01', 0)")
    ledger = Ledger.open(url, schema)
    try:
        assert ledger.schema_version == 2
        ledger.apply_updates([{"id": f"b/t/2026-07-0{d}", "partitions": [("t", f"2026-07-0{d}", "*", "sql", "tfp")]}
                              for d in (2, 3)])
        groups = {(t, f, tfp): sorted(dss) for t, f, tfp, dss in ledger.partition_groups()}
        assert groups == {("t", "*", None): ["2026-07-01"], ("t", "*", "tfp"): ["2026-07-02", "2026-07-03"]}
        ledger.refresh_template_fingerprints([("t", "2026-07-01", "abc", "tfp")])
        states = {ds: tfp for _, ds, _, tfp in ledger.partition_states("t")}
        assert states == {"2026-07-01": "tfp", "2026-07-02": "tfp", "2026-07-03": "tfp"}
    finally:
        ledger.close()
    Ledger.open(url, schema).close()  # a second process opening it finds nothing to migrate
