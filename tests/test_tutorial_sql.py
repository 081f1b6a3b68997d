"""The retail tutorial's SQL, run on DuckDB over generated data, against the pure-Python oracle.

A tiny local renderer stands in for the tool's (same contract: tool-made dates and identifiers
render raw, any other string renders as a quoted SQL literal), so these tests exercise the
templates and the data, not the tool.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import jsonschema
import pytest
import yaml

from backfill.tutorial import generate_source_data

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


# ---------------------------------------------------------------- a tiny renderer


class Raw(str):
    """SQL text the tool itself produced (a date, an identifier, a literal): rendered as is."""


def _finalize(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, finalize=_finalize, autoescape=False)


def render(template: str, ds: date, params: dict[str, Any], refs: set[str] | None = None) -> str:
    def ref(name: str) -> Raw:
        if refs is not None:
            refs.add(name)
        return Raw(name)

    def source(path: str) -> Raw:
        return Raw("'" + str(path).replace("'", "''") + "'")

    def ds_add(value: str, days: int) -> Raw:
        return Raw((date.fromisoformat(str(value)) + timedelta(days=days)).isoformat())

    return _ENV.from_string(template).render(
        ds=Raw(ds.isoformat()), ds_nodash=Raw(ds.strftime("%Y%m%d")), bizdate=Raw(ds.strftime("%Y%m%d")),
        params=params, ref=ref, source=source, ds_add=ds_add,
    )


# ---------------------------------------------------------------- the project


@dataclass(frozen=True)
class Table:
    name: str
    fields: tuple[tuple[str, str], ...]
    template: str
    depends_on: tuple[str, ...]


def tables(project: Path) -> dict[str, Table]:
    out: dict[str, Table] = {}
    for path in sorted((project / "tables").glob("*.yaml")):
        spec = load(path)
        out[spec["name"]] = Table(
            spec["name"], tuple((f["name"], f["type"]) for f in spec["fields"]),
            (path.parent / spec["sql"]).read_text(encoding="utf-8"), tuple(spec.get("depends_on", ())),
        )
    return out


def dates_of(backfill: dict[str, Any]) -> list[date]:
    span = backfill["data_timestamp"]
    first, last = date.fromisoformat(span["start"]), date.fromisoformat(span["end"])
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def in_dependency_order(names: list[str], specs: dict[str, Table]) -> list[str]:
    done: list[str] = []
    while len(done) < len(names):
        ready = [n for n in names if n not in done and all(d in done or d not in names
                                                            for d in specs[n].depends_on)]
        assert ready, f"dependency cycle among {names}"
        done.extend(sorted(ready))
    return done


@dataclass
class Warehouse:
    project: Path
    con: duckdb.DuckDBPyConnection
    specs: dict[str, Table]
    params: dict[str, Any]
    integration: dict[str, Any]
    logical: dict[str, Any]

    def run(self, table: str, ds: date) -> None:
        spec = self.specs[table]
        refs: set[str] = set()
        sql = render(spec.template, ds, self.params, refs)
        assert refs == set(spec.depends_on), f"{table}: reads {sorted(refs)}, declares {spec.depends_on}"
        cols = ", ".join(name for name, _ in spec.fields)
        self.con.execute(f"DELETE FROM {table} WHERE ds = DATE '{ds}'")
        self.con.execute(f"INSERT INTO {table} ({cols}, ds) SELECT {cols}, DATE '{ds}' FROM (\n{sql}\n) AS q")

    def rows(self, table: str, ds: date) -> list[tuple[Any, ...]]:
        cols = ", ".join(name for name, _ in self.specs[table].fields)
        return oracle.sort_rows(self.con.execute(f"SELECT {cols} FROM {table} WHERE ds = ?", [ds]).fetchall())


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    project = tmp_path_factory.mktemp("tutorial") / "specs"
    shutil.copytree(SPECS, project, ignore=shutil.ignore_patterns("data", ".backfill"))
    counts = generate_source_data(project)
    assert all(n > 0 for n in counts.values())
    con = duckdb.connect(str(project.parent / "warehouse.duckdb"))
    con.execute(f"SET file_search_path = '{project}'")  # the engine resolves source() against the project
    specs = tables(project)
    for spec in specs.values():
        columns = ", ".join(f"{name} {type_}" for name, type_ in spec.fields)
        con.execute(f"CREATE TABLE {spec.name} ({columns}, ds DATE)")
    wh = Warehouse(project, con, specs, load(project / "project.yaml")["params"],
                   load(project / "backfills" / "integration.yaml"),
                   load(project / "backfills" / "logical_tables.yaml"))
    for backfill in (wh.integration, wh.logical):
        targets = in_dependency_order([t["table"] for t in backfill["targets"]], specs)
        for ds in dates_of(backfill):
            for table in targets:
                wh.run(table, ds)
    yield wh
    con.close()


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
    for table in in_dependency_order(["dim_customer", "dim_products", "fct_order_buy_di", "dws_all"],
                                     warehouse.specs):
        warehouse.run(table, ds)
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
