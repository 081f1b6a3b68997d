"""An independent oracle for the retail tutorial: the expected rows of every table, in plain Python.

It reads the generated source CSVs (csv, decimal, datetime only: no DuckDB, no SQL) and follows the
table descriptions in specs/tables/*.yaml:

- ods_product / ods_customer (ds): per id, the latest version with updated_at on or before ds.
- ods_order (ds): the orders placed on ds.
- dim_products / dim_customer (ds): the ods snapshot of ds plus derived columns.
- fct_order_buy_di (ds): the orders of ds, with product and customer attributes of ds (None if absent).
- dws_all (ds): customers with an order in ods_order partitions ds-6..ds; 1-day metrics of ds (0 when
  none), the average rounded half up to the cent.

`loaded_ods_dates` says which ods_order partitions exist (None: all), for the 7-day window; an
ods_order partition that is not loaded is empty, and so is everything computed from it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CENT = Decimal("0.01")
Row = tuple[Any, ...]


def _source_dir(project_dir: Path) -> Path:
    spec = yaml.safe_load((project_dir / "project.yaml").read_text(encoding="utf-8"))
    return project_dir / str(spec.get("params", {}).get("source_dir", "data"))


def _read(path: Path) -> tuple[dict[str, str], ...]:
    stat = path.stat()
    return _read_version(path, stat.st_mtime_ns, stat.st_size)


@cache
def _read_version(path: Path, mtime_ns: int, size: int) -> tuple[dict[str, str], ...]:
    with path.open(encoding="utf-8", newline="") as handle:
        return tuple(csv.DictReader(handle))


def _money(text: str) -> Decimal:
    return Decimal(text).quantize(CENT)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _latest(rows: Iterable[dict[str, str]], key: str, ds: date) -> list[dict[str, str]]:
    """Per `key`, the version with the greatest updated_at on or before the end of `ds`."""
    best: dict[str, dict[str, str]] = {}
    for row in rows:
        if _ts(row["updated_at"]).date() > ds:
            continue
        seen = best.get(row[key])
        if seen is None or _ts(row["updated_at"]) > _ts(seen["updated_at"]):
            best[row[key]] = row
    return list(best.values())


def ods_product(project_dir: Path, ds: date) -> list[Row]:
    rows = _read(_source_dir(project_dir) / "products.csv")
    return [(int(r["product_id"]), r["product_name"], r["category"], r["brand"], _money(r["price"]),
             _ts(r["updated_at"])) for r in _latest(rows, "product_id", ds)]


def ods_customer(project_dir: Path, ds: date) -> list[Row]:
    rows = _read(_source_dir(project_dir) / "customers.csv")
    return [(int(r["customer_id"]), r["customer_name"], r["gender"], r["city"], r["member_level"],
             _ts(r["created_at"]), _ts(r["updated_at"])) for r in _latest(rows, "customer_id", ds)]


def ods_order(project_dir: Path, ds: date, loaded: set[date] | None) -> list[Row]:
    if loaded is not None and ds not in loaded:
        return []
    rows = _read(_source_dir(project_dir) / "orders.csv")
    return [(int(r["order_id"]), _ts(r["order_time"]), int(r["customer_id"]), int(r["product_id"]),
             int(r["quantity"]), _money(r["amount"])) for r in rows if _ts(r["order_time"]).date() == ds]


def _price_band(price: Decimal) -> str:
    if price < 50:
        return "low"
    return "mid" if price < 200 else "high"


def dim_products(project_dir: Path, ds: date) -> list[Row]:
    return [(pid, name, category, brand, price, _price_band(price))
            for pid, name, category, brand, price, _updated in ods_product(project_dir, ds)]


def dim_customer(project_dir: Path, ds: date) -> list[Row]:
    return [(cid, name, gender, city, level, created.date(), (ds - created.date()).days)
            for cid, name, gender, city, level, created, _updated in ods_customer(project_dir, ds)]


def fct_order_buy_di(project_dir: Path, ds: date, loaded: set[date] | None) -> list[Row]:
    products = {row[0]: row for row in dim_products(project_dir, ds)}
    customers = {row[0]: row for row in dim_customer(project_dir, ds)}
    out: list[Row] = []
    for order in ods_order(project_dir, ds, loaded):
        p = products.get(order[3])
        c = customers.get(order[2])
        out.append(order + (p[2] if p else None, p[3] if p else None, p[5] if p else None,
                            c[3] if c else None, c[4] if c else None))
    return out


def dws_all(project_dir: Path, ds: date, loaded: set[date] | None) -> list[Row]:
    window: dict[int, int] = {}
    for back in range(7):
        for order in ods_order(project_dir, ds - timedelta(days=back), loaded):
            window[order[2]] = window.get(order[2], 0) + 1
    daily: dict[int, list[Row]] = {}
    for fact in fct_order_buy_di(project_dir, ds, loaded):
        daily.setdefault(fact[2], []).append(fact)
    out: list[Row] = []
    for customer, cnt_7d in window.items():
        facts = daily.get(customer, [])
        total = sum((f[5] for f in facts), Decimal("0.00")).quantize(CENT)
        avg = (total / len(facts)).quantize(CENT, rounding=ROUND_HALF_UP) if facts else Decimal("0.00")
        out.append((customer, len(facts), total, avg, len({f[3] for f in facts}), cnt_7d))
    return out


def _sort_key(row: Row) -> tuple[tuple[bool, Any], ...]:
    return tuple((value is None, "" if value is None else value) for value in row)


def sort_rows(rows: Iterable[Row]) -> list[Row]:
    return sorted(rows, key=_sort_key)


def expected(project_dir: Path, table: str, ds: date, loaded_ods_dates: set[date] | None = None) -> list[Row]:
    """The rows of partition `ds` of `table`, sorted, in declared field order."""
    if table == "ods_product":
        rows = ods_product(project_dir, ds)
    elif table == "ods_customer":
        rows = ods_customer(project_dir, ds)
    elif table == "ods_order":
        rows = ods_order(project_dir, ds, loaded_ods_dates)
    elif table == "dim_products":
        rows = dim_products(project_dir, ds)
    elif table == "dim_customer":
        rows = dim_customer(project_dir, ds)
    elif table == "fct_order_buy_di":
        rows = fct_order_buy_di(project_dir, ds, loaded_ods_dates)
    elif table == "dws_all":
        rows = dws_all(project_dir, ds, loaded_ods_dates)
    else:
        raise KeyError(f"the oracle knows no table {table!r}")
    return sort_rows(rows)


# ---------------------------------------------------------------- tables of tests/fixtures/lineage_tables
def _orders_per_customer(project_dir: Path, days: Iterable[date], loaded: set[date] | None) -> list[Row]:
    counts: dict[int, int] = {}
    for day in days:
        for order in ods_order(project_dir, day, loaded):
            counts[order[2]] = counts.get(order[2], 0) + 1
    return sort_rows(counts.items())


def lineage_expected(project_dir: Path, table: str, ds: date, loaded: set[date]) -> list[Row]:
    """cum_orders: orders from the first loaded day to ds; mtd_orders: from the 1st of ds's month to ds;
    all_orders: every loaded day's orders (it reads every partition)."""
    first = min(loaded)
    if table == "cum_orders":
        days = [first + timedelta(days=n) for n in range((ds - first).days + 1)]
    elif table == "mtd_orders":
        days = [ds.replace(day=1) + timedelta(days=n) for n in range(ds.day)]
    elif table == "all_orders":
        days = sorted(loaded)
    else:
        return expected(project_dir, table, ds, loaded)
    return _orders_per_customer(project_dir, days, loaded)
