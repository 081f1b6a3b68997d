"""Deterministic source data for the retail tutorial project (products, customers, orders).

The files imitate what an integration task would pull from an operational system:

- ``products.csv`` and ``customers.csv`` are change logs: one row per *version* of a product or
  customer, stamped with ``updated_at`` (the first version is the creation). The state of the
  catalogue at the end of a day is, per id, the latest version updated on or before that day.
  A version never shares its ``updated_at`` with another version of the same id.
- ``orders.csv`` holds one row per order; ``amount`` = ``quantity`` x the product's price at the
  order time. An order only references products and customers created before the order's day.

Same arguments, same bytes: everything comes from ``random.Random(seed)``, never from the clock.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import yaml

__all__ = ["generate_source_data", "source_dir_of"]

CATEGORIES = ("fresh", "snacks", "drinks", "household", "beauty", "electronics", "books")
BRANDS = ("Acme", "Nimbus", "Orchard", "Kestrel", "Lumen", "Harbor", "Quill")
CITIES = ("Hangzhou", "Shanghai", "Beijing", "Shenzhen", "Chengdu", "Wuhan", "Xi'an", "Nanjing")
LEVELS = ("bronze", "silver", "gold", "platinum")
NAME_PARTS = ("An", "Bo", "Chen", "Dai", "Fang", "Gu", "Hua", "Jin", "Lan", "Mei", "Ning", "Qiu")

PRODUCT_HEADER = ("product_id", "product_name", "category", "brand", "price", "updated_at")
CUSTOMER_HEADER = ("customer_id", "customer_name", "gender", "city", "member_level", "created_at",
                   "updated_at")
ORDER_HEADER = ("order_id", "order_time", "customer_id", "product_id", "quantity", "amount")

DAY_SECONDS = 86_400


def money(cents: int) -> str:
    """Cents as a decimal string with exactly two decimals."""
    return f"{cents // 100}.{cents % 100:02d}"


def stamp(moment: datetime) -> str:
    return moment.isoformat(sep="T", timespec="seconds")


def source_dir_of(project_dir: Path) -> str:
    """`params.source_dir` of the project (``data`` when the project does not say)."""
    spec = project_dir / "project.yaml"
    if spec.is_file():
        loaded = yaml.safe_load(spec.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            params = loaded.get("params")
            if isinstance(params, dict) and isinstance(params.get("source_dir"), str):
                return str(params["source_dir"])
    return "data"


@dataclass
class Entity:
    """A product or customer: its creation time and its versions ``(updated_at, values)``."""

    ident: int
    created: datetime
    versions: list[tuple[datetime, dict[str, str]]] = field(default_factory=list)

    def value_at(self, moment: datetime, key: str) -> str:
        current = self.versions[0][1][key]
        for updated, values in self.versions:
            if updated > moment:
                break
            current = values[key]
        return current


def _moment(rng: random.Random, first: date, last: date) -> datetime:
    """A random second between the start of ``first`` and the end of ``last``."""
    days = (last - first).days
    return datetime.combine(first, time()) + timedelta(seconds=rng.randrange((days + 1) * DAY_SECONDS))


def _created(rng: random.Random, ident: int, count: int, start: date, end: date) -> datetime:
    """Every fifth id appears during the period (spread evenly over it); the others existed already."""
    if ident % 5:
        return _moment(rng, start - timedelta(days=60), start - timedelta(days=1))
    day = start + timedelta(days=(end - start).days * ident // (count + 1))
    return _moment(rng, day, day)


def _change_times(rng: random.Random, created: datetime, end: date, count: int) -> list[datetime]:
    """Up to ``count`` distinct moments after ``created``, before the end of ``end``."""
    last = datetime.combine(end, time()) + timedelta(seconds=DAY_SECONDS - 1)
    span = int((last - created).total_seconds())
    if span <= 0:
        return []
    picked = {created + timedelta(seconds=1 + rng.randrange(span)) for _ in range(count)}
    return sorted(picked)


def _products(rng: random.Random, count: int, start: date, end: date) -> list[Entity]:
    out: list[Entity] = []
    for ident in range(1, count + 1):
        created = _created(rng, ident, count, start, end)
        category, brand = rng.choice(CATEGORIES), rng.choice(BRANDS)
        base = {
            "product_name": f"{brand} {category} #{ident}",
            "category": category,
            "brand": brand,
            "price": money(rng.randrange(199, 59_999)),
        }
        product = Entity(ident, created, [(created, base)])
        for moment in _change_times(rng, created, end, rng.choice((0, 0, 1, 2, 3))):
            old = int(product.versions[-1][1]["price"].replace(".", ""))
            new = max(99, old * rng.randrange(70, 131) // 100)
            product.versions.append((moment, {**product.versions[-1][1], "price": money(new)}))
        out.append(product)
    return out


def _customers(rng: random.Random, count: int, start: date, end: date) -> list[Entity]:
    out: list[Entity] = []
    for ident in range(1, count + 1):
        created = _created(rng, ident, count, start, end)
        base = {
            "customer_name": rng.choice(NAME_PARTS) + " " + rng.choice(NAME_PARTS) + rng.choice(NAME_PARTS),
            "gender": rng.choice(("F", "M")),
            "city": rng.choice(CITIES),
            "member_level": rng.choice(LEVELS[:2]),
            "created_at": stamp(created),
        }
        customer = Entity(ident, created, [(created, base)])
        for moment in _change_times(rng, created, end, rng.choice((0, 0, 0, 1, 2))):
            values = dict(customer.versions[-1][1])
            if rng.random() < 0.6:
                level = LEVELS.index(values["member_level"])
                values["member_level"] = LEVELS[min(len(LEVELS) - 1, level + 1)]
            else:
                values["city"] = rng.choice(CITIES)
            customer.versions.append((moment, values))
        out.append(customer)
    return out


def _write(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> int:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return len(rows)


def _version_rows(entities: list[Entity], header: tuple[str, ...]) -> list[list[str]]:
    rows: list[list[str]] = []
    for entity in entities:
        for updated, values in entity.versions:
            row = {**values, header[0]: str(entity.ident), "updated_at": stamp(updated)}
            rows.append([row[name] for name in header])
    return rows


def generate_source_data(
    project_dir: Path,
    scale: int = 1,
    start: date = date(2026, 6, 1),
    end: date = date(2026, 7, 31),
    seed: int = 7,
) -> dict[str, int]:
    """Write deterministic source files under project_dir/<source_dir>/ (products.csv, customers.csv,
    orders.csv); return row counts per file."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    if end < start:
        raise ValueError("end must not be before start")
    rng = random.Random(seed)
    products = _products(rng, 20 * scale, start, end)
    customers = _customers(rng, 50 * scale, start, end)

    orders: list[list[str]] = []
    day = start
    while day <= end:
        midnight = datetime.combine(day, time())
        on_sale = [p for p in products if p.created < midnight]
        members = [c for c in customers if c.created < midnight]
        count = rng.randint(20 * scale, 40 * scale) if on_sale and members else 0
        for second in sorted(rng.randrange(DAY_SECONDS) for _ in range(count)):
            moment = midnight + timedelta(seconds=second)
            product, customer = rng.choice(on_sale), rng.choice(members)
            quantity = rng.choice((1, 1, 1, 2, 2, 3, 5))
            cents = int(product.value_at(moment, "price").replace(".", "")) * quantity
            orders.append([str(len(orders) + 1), stamp(moment), str(customer.ident), str(product.ident),
                           str(quantity), money(cents)])
        day += timedelta(days=1)

    target = project_dir / source_dir_of(project_dir)
    target.mkdir(parents=True, exist_ok=True)
    return {
        "products.csv": _write(target / "products.csv", PRODUCT_HEADER,
                               _version_rows(products, PRODUCT_HEADER)),
        "customers.csv": _write(target / "customers.csv", CUSTOMER_HEADER,
                                _version_rows(customers, CUSTOMER_HEADER)),
        "orders.csv": _write(target / "orders.csv", ORDER_HEADER, orders),
    }
