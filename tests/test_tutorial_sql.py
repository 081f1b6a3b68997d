"""The retail tutorial's SQL, run on DuckDB over generated data, against the pure-Python oracle.

The real planner renders and checks every instance, the real DuckDB engine writes each partition in
execution order (no Prefect here, so this runs in seconds), and every partition must equal the
oracle computed in plain Python from the source files.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tutorial_copy import copy_tutorial

from backfill.plan.planner import LedgerView, PlannedInstance, plan_backfill
from backfill.plan.validate import Validated, validate_project
from backfill.run.engines.base import WriteRequest
from backfill.run.engines.duckdb_engine import DuckDBEngine
from backfill.spec.model import DateInterval
from backfill.spec.tutorial import generate_source_data

sys.path.insert(0, str(Path(__file__).parent))
import oracle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"


class _TextDates(yaml.SafeLoader):
    """YAML as the tool reads it: dates stay text."""


_TextDates.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TextDates)  # noqa: S506
    assert isinstance(data, dict)
    return data


# ---------------------------------------------------------------- the real pipeline, without Prefect


def dates_of(backfill: dict[str, Any]) -> list[date]:
    span = backfill["data_timestamp"]
    first, last = date.fromisoformat(span["start"]), date.fromisoformat(span["end"])
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass
class Warehouse:
    """The tutorial planned by the real planner and written instance by instance by the real engine."""

    project: Path
    engine: DuckDBEngine
    validated: Validated
    integration: dict[str, Any]
    logical: dict[str, Any]

    def write(self, instance: PlannedInstance) -> None:
        table = self.validated.project.tables[instance.table]
        self.engine.write_partition(WriteRequest(table, instance.ds, instance.sql, None, instance.id,
                                                 f"test:{instance.id}:{instance.ds}", instance.fingerprint))

    def rows(self, table: str, ds: date) -> list[tuple[Any, ...]]:
        cols = ", ".join(f.name for f in self.validated.project.tables[table].fields)
        return oracle.sort_rows(self.engine.query(f"SELECT {cols} FROM {table} WHERE ds = ?", [ds]))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    project = tmp_path_factory.mktemp("tutorial") / "specs"
    copy_tutorial(project)
    counts = generate_source_data(project)
    assert all(n > 0 for n in counts.values())
    validated = validate_project(project, today=date(2026, 8, 1))
    engine = DuckDBEngine(".backfill/warehouse.duckdb", project)
    engine.ensure_tables(list(validated.project.tables.values()))
    wh = Warehouse(project, engine, validated, load(project / "backfills" / "integration.yaml"),
                   load(project / "backfills" / "logical_tables.yaml"))
    for plan in sorted(validated.plans, key=lambda p: p.name):  # integration before logical
        for instance in plan.instances:  # in execution order: groups, dates, dependencies
            wh.write(instance)
    yield wh
    engine.close()


# ---------------------------------------------------------------- tests


def test_specs_validate_against_schemas() -> None:
    schemas = {name: yaml.safe_load((REPO / "schemas" / f"{name}.schema.json").read_text())
               for name in ("project", "table", "backfill")}
    jsonschema.validate(load(SPECS / "project.yaml"), schemas["project"])
    names = []
    for path in sorted((SPECS / "tables").glob("*.yaml")):
        spec = load(path)
        jsonschema.validate(spec, schemas["table"])
        assert spec["name"] == path.stem and spec["primary_key"], path
        assert (path.parent / spec["sql"]).is_file(), path
        names.append(spec["name"])
    assert sorted(names) == sorted(["ods_product", "ods_customer", "ods_order", "dim_customer",
                                    "dim_products", "fct_order_buy_di", "dws_all"])
    for path in sorted((SPECS / "backfills").glob("*.yaml")):
        jsonschema.validate(load(path), schemas["backfill"])


@pytest.mark.parametrize("table", ["ods_product", "ods_customer", "ods_order"])
def test_integration_tables_match_oracle(warehouse: Warehouse, table: str) -> None:
    for ds in dates_of(warehouse.integration):
        got = warehouse.rows(table, ds)
        assert got, f"{table} {ds} is empty"
        assert _exact(got) == _exact(oracle.expected(warehouse.project, table, ds)), f"{table} {ds}"


@pytest.mark.parametrize("table", ["dim_customer", "dim_products", "fct_order_buy_di", "dws_all"])
def test_logical_tables_match_oracle(warehouse: Warehouse, table: str) -> None:
    loaded = set(dates_of(warehouse.integration))
    for ds in dates_of(warehouse.logical):
        got = warehouse.rows(table, ds)
        assert got, f"{table} {ds} is empty"
        assert _exact(got) == _exact(oracle.expected(warehouse.project, table, ds, loaded)), f"{table} {ds}"


def test_dws_window_reads_only_loaded_ods_partitions(warehouse: Warehouse) -> None:
    loaded = set(dates_of(warehouse.integration))
    ds = min(loaded) + timedelta(days=2)  # its 7-day window starts before the first loaded partition
    spec = warehouse.validated.project.backfill_by_name("tutorial_logical")
    assert spec is not None
    one_day = dataclasses.replace(spec, data_timestamp=(DateInterval(
        datetime.combine(ds, datetime.min.time()), datetime.combine(ds, datetime.min.time())),))
    plan = plan_backfill(warehouse.validated.project, warehouse.validated.compiler, one_day, LedgerView(),
                         date(2026, 8, 1), warehouse.validated.graph)
    assert [i.table for i in plan.instances] == ["dim_customer", "dim_products", "fct_order_buy_di", "dws_all"]
    for instance in plan.instances:
        warehouse.write(instance)
    assert _exact(warehouse.rows("dws_all", ds)) == _exact(oracle.expected(warehouse.project, "dws_all", ds,
                                                                          loaded))
    assert oracle.expected(warehouse.project, "dws_all", ds, loaded) != oracle.expected(
        warehouse.project, "dws_all", ds, None)


def test_tutorial_data_exercises_the_logic(warehouse: Warehouse) -> None:
    """The generated data is not trivial: versions change, windows matter, joins always hit."""
    project, days = warehouse.project, dates_of(warehouse.logical)
    facts = [r for ds in days for r in oracle.expected(project, "fct_order_buy_di", ds)]
    assert facts and all(value is not None for row in facts for value in row)
    dws = [r for ds in days for r in oracle.expected(project, "dws_all", ds)]
    assert any(r[1] == 0 and r[3] == Decimal("0.00") for r in dws), "customers with no order on ds"
    assert any(r[1] > 1 for r in dws), "customers with several orders on ds"
    prices = {ds: {r[0]: r[4] for r in oracle.expected(project, "dim_products", ds)} for ds in days}
    assert any(prices[a].get(p) != prices[b].get(p) for a, b in zip(days, days[1:], strict=False)
               for p in prices[a]), "a price changes during the backfill"
    customers = [len(oracle.expected(project, "dim_customer", ds)) for ds in days]
    assert customers[0] < customers[-1], "customers register during the backfill"


def test_generator_is_deterministic(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (first, second, other):
        folder.mkdir()
    assert generate_source_data(first) == generate_source_data(second)
    generate_source_data(other, seed=8)
    for name in ("products.csv", "customers.csv", "orders.csv"):
        assert (first / "data" / name).read_bytes() == (second / "data" / name).read_bytes()
    assert (first / "data" / "orders.csv").read_bytes() != (other / "data" / "orders.csv").read_bytes()


def test_generator_follows_source_dir_and_scale(tmp_path: Path) -> None:
    (tmp_path / "project.yaml").write_text("name: x\nparams: {source_dir: raw/src}\n")
    small = generate_source_data(tmp_path, start=date(2026, 7, 1), end=date(2026, 7, 10))
    assert sorted(p.name for p in (tmp_path / "raw" / "src").iterdir()) == sorted(small)
    big = generate_source_data(tmp_path / "big", scale=4, start=date(2026, 7, 1), end=date(2026, 7, 10))
    assert 3 * small["orders.csv"] < big["orders.csv"] < 5 * small["orders.csv"]
    assert big["products.csv"] > small["products.csv"] and big["customers.csv"] > small["customers.csv"]
    assert 20 * 10 <= small["orders.csv"] <= 40 * 10


def _exact(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with every Decimal as its exact text (scale included) and its type kept."""
    return [tuple(f"Decimal:{v}" if isinstance(v, Decimal) else v for v in row) for row in rows]
