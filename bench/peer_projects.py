"""The retail tutorial as three equivalent projects: backfill, SQLMesh and dbt-duckdb.

Every table is written once as a *range* query (the rows of every day from START to END, each row
with its day in `ds`); each tool gets the same SQL with its own way of naming the range and the
upstream tables:

- backfill: range templates (`start_ds` / `end_ds`), `batch_size` on the backfill targets;
- SQLMesh: INCREMENTAL_BY_TIME_RANGE models (`@start_ds` / `@end_ds`), `batch_size 1` or none;
- dbt-duckdb: incremental microbatch models (`model.batch.event_time_start` / `_end`), batch_size
  day or year; the 7-day window opts out of dbt's automatic filter of the upstream (`.render()`).
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

__all__ = ["TABLES", "make_backfill", "make_dbt", "make_sqlmesh", "change_template"]

TABLES = ("ods_product", "ods_customer", "ods_order", "dim_products", "dim_customer", "fct_order_buy_di",
          "dws_all")
INTEGRATION = TABLES[:3]
LOGICAL = TABLES[3:]
ROOT = Path(__file__).resolve().parent.parent

_DAYS = "(SELECT CAST(range AS DATE) AS ds FROM range({start}, {end} + INTERVAL 1 DAY, INTERVAL 1 DAY))"
_CSV = {
    "products": "{{'product_id': 'BIGINT', 'product_name': 'VARCHAR', 'category': 'VARCHAR', "
                "'brand': 'VARCHAR', 'price': 'DECIMAL(18,2)', 'updated_at': 'TIMESTAMP'}}",
    "customers": "{{'customer_id': 'BIGINT', 'customer_name': 'VARCHAR', 'gender': 'VARCHAR', "
                 "'city': 'VARCHAR', 'member_level': 'VARCHAR', 'created_at': 'TIMESTAMP', "
                 "'updated_at': 'TIMESTAMP'}}",
    "orders": "{{'order_id': 'BIGINT', 'order_time': 'TIMESTAMP', 'customer_id': 'BIGINT', "
              "'product_id': 'BIGINT', 'quantity': 'INTEGER', 'amount': 'DECIMAL(18,2)'}}",
}


def _csv(name: str) -> str:
    return (f"read_csv({{data}}, header = true, auto_detect = false, columns = {_CSV[name]})"
            .replace("{data}", "{data_" + name + "}"))


# {start} / {end}: the range's first and last day (DATE expressions); {ods_order} etc.: upstream tables;
# {ods_order_all}: ods_order without any filter a tool would add (the 7-day window reads earlier days)
SQL = {
    "ods_product": f"""SELECT p.product_id, p.product_name, p.category, p.brand, p.price, p.updated_at, d.ds
FROM {_csv("products")} AS p
JOIN {_DAYS} AS d ON CAST(p.updated_at AS DATE) <= d.ds
QUALIFY row_number() OVER (PARTITION BY d.ds, p.product_id ORDER BY p.updated_at DESC) = 1""",
    "ods_customer": f"""SELECT c.customer_id, c.customer_name, c.gender, c.city, c.member_level, c.created_at,
       c.updated_at, d.ds
FROM {_csv("customers")} AS c
JOIN {_DAYS} AS d ON CAST(c.updated_at AS DATE) <= d.ds
QUALIFY row_number() OVER (PARTITION BY d.ds, c.customer_id ORDER BY c.updated_at DESC) = 1""",
    "ods_order": f"""SELECT order_id, order_time, customer_id, product_id, quantity, amount,
       CAST(order_time AS DATE) AS ds
FROM {_csv("orders")}
WHERE CAST(order_time AS DATE) BETWEEN {{start}} AND {{end}}""",
    "dim_products": """SELECT p.product_id, p.product_name, p.category, p.brand, p.price,
       CASE WHEN p.price < 50 THEN 'low' WHEN p.price < 200 THEN 'mid' ELSE 'high' END AS price_band, p.ds
FROM {ods_product} AS p
WHERE p.ds BETWEEN {start} AND {end}""",
    "dim_customer": """SELECT c.customer_id, c.customer_name, c.gender, c.city, c.member_level,
       CAST(c.created_at AS DATE) AS register_date,
       CAST(c.ds - CAST(c.created_at AS DATE) AS INTEGER) AS register_days, c.ds
FROM {ods_customer} AS c
WHERE c.ds BETWEEN {start} AND {end}""",
    "fct_order_buy_di": """SELECT o.order_id, o.order_time, o.customer_id, o.product_id, o.quantity, o.amount,
       p.category, p.brand, p.price_band, c.city, c.member_level, o.ds
FROM {ods_order} AS o
LEFT JOIN {dim_products} AS p
    ON p.product_id = o.product_id AND p.ds = o.ds AND p.ds BETWEEN {start} AND {end}
LEFT JOIN {dim_customer} AS c
    ON c.customer_id = o.customer_id AND c.ds = o.ds AND c.ds BETWEEN {start} AND {end}
WHERE o.ds BETWEEN {start} AND {end}""",
    "dws_all": """WITH days AS """ + _DAYS + """,
orders_7d AS (
    SELECT d.ds, o.customer_id, COUNT(o.order_id) AS order_cnt_7d
    FROM days AS d
    JOIN {ods_order_all} AS o ON o.ds BETWEEN d.ds - 6 AND d.ds
    WHERE o.ds BETWEEN {start} - 6 AND {end}
    GROUP BY d.ds, o.customer_id
),
orders_1d AS (
    SELECT f.ds, f.customer_id, COUNT(f.order_id) AS order_cnt_1d, SUM(f.amount) AS order_amt_1d,
        CAST((CAST(SUM(f.amount) * 100 AS BIGINT) * 2 + COUNT(f.amount)) // (2 * COUNT(f.amount))
             AS DECIMAL(18, 0)) * 0.01 AS avg_order_amt_1d,
        COUNT(DISTINCT f.product_id) AS product_cnt_1d
    FROM {fct_order_buy_di} AS f
    WHERE f.ds BETWEEN {start} AND {end}
    GROUP BY f.ds, f.customer_id
)
SELECT w.customer_id, COALESCE(d.order_cnt_1d, 0) AS order_cnt_1d,
    CAST(COALESCE(d.order_amt_1d, 0) AS DECIMAL(18, 2)) AS order_amt_1d,
    CAST(COALESCE(d.avg_order_amt_1d, 0) AS DECIMAL(18, 2)) AS avg_order_amt_1d,
    COALESCE(d.product_cnt_1d, 0) AS product_cnt_1d, w.order_cnt_7d, w.ds
FROM orders_7d AS w
LEFT JOIN orders_1d AS d ON d.customer_id = w.customer_id AND d.ds = w.ds""",
}
CHANGE = ("COALESCE(d.product_cnt_1d, 0) AS product_cnt_1d", "COALESCE(d.product_cnt_1d, 0) + 0 AS product_cnt_1d")


def _render(table: str, start: str, end: str, refs: dict[str, str], data: str) -> str:
    values = {**refs, "start": start, "end": end}
    values.update({f"data_{n}": f"'{data}/{n}.csv'" for n in _CSV})
    return SQL[table].format(**values)


def change_template(path: Path) -> None:
    """The one-template change every tool sees: dws_all's SQL, same results."""
    text = path.read_text()
    assert CHANGE[0] in text, path
    path.write_text(text.replace(*CHANGE))


def make_data(root: Path, first: date, last: date) -> Path:
    from backfill.spec.tutorial import generate_source_data

    root.mkdir(parents=True, exist_ok=True)
    (root / "project.yaml").write_text("name: data\nparams: {source_dir: data}\n")
    generate_source_data(root, start=first, end=last)  # nothing before the range: every tool sees the same
    (root / "project.yaml").unlink()
    return root / "data"


def make_backfill(root: Path, data: Path, first: date, last: date, batch: int, groups: int) -> Path:
    """The tutorial's tables with range templates, two backfills like the tutorial's."""
    (root / "tables").mkdir(parents=True)
    (root / "sql").mkdir()
    shutil.copytree(data, root / "data")
    (root / "project.yaml").write_text(
        "name: retail\ndialect: duckdb\nengine: {type: duckdb, path: .backfill/warehouse.duckdb}\n"
        "state: .backfill/state.db\nmax_parallel: 4\nparams: {source_dir: data}\n")
    refs = {t: "{{ ref('" + t + "') }}" for t in TABLES}
    refs["ods_order_all"] = refs["ods_order"]
    for t in TABLES:
        spec = (ROOT / "specs" / "tables" / f"{t}.yaml").read_text()
        spec = "\n".join(line for line in spec.splitlines() if not line.startswith(("batch_size", "depends_on")))
        (root / "tables" / f"{t}.yaml").write_text(spec + "\n")
        sql = _render(t, "DATE '{{ start_ds }}'", "DATE '{{ end_ds }}'", refs, "{{ params.source_dir }}")
        sql = sql.replace("'{{ params.source_dir }}/", "{{ source(params.source_dir ~ '/").replace(
            ".csv'", ".csv') }}")
        (root / "sql" / f"{t}.sql").write_text(sql + "\n")
    (root / "backfills").mkdir()
    for name, tables in (("integration", INTEGRATION), ("logical", LOGICAL)):
        targets = "".join(f"  - table: {t}\n    batch_size: {batch}\n" for t in tables)
        (root / "backfills" / f"{name}.yaml").write_text(
            f"name: {name}\ntargets:\n{targets}data_timestamp: {{start: {first}, end: {last}}}\n"
            f"groups: {groups}\norder: ascending\n")
    return root


def make_sqlmesh(root: Path, data: Path, first: date, last: date, batch_size_1: bool) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "config.yaml").write_text(
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: warehouse.duckdb\n"
        "default_gateway: local\nmodel_defaults:\n  dialect: duckdb\n")
    refs = {t: f"bench.{t}" for t in TABLES}
    refs["ods_order_all"] = refs["ods_order"]
    batch = ", batch_size 1" if batch_size_1 else ""
    for t in TABLES:
        sql = _render(t, "CAST(@start_ds AS DATE)", "CAST(@end_ds AS DATE)", refs, str(data.resolve()))
        (root / "models" / f"{t}.sql").write_text(
            f"MODEL (\n  name bench.{t},\n  kind INCREMENTAL_BY_TIME_RANGE (time_column ds{batch}),\n"
            f"  start '{first}',\n  end '{last}',\n  cron '@daily'\n);\n\n{sql}\n")
    return root


def make_dbt(root: Path, data: Path, first: date, batch_size: str) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\nmodel-paths: [models]\n"
        "flags:\n  send_anonymous_usage_stats: false\n")
    (root / "profiles.yml").write_text(
        "bench:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: warehouse.duckdb\n"
        "      threads: 4\n")
    refs = {t: "{{ ref('" + t + "') }}" for t in TABLES}
    refs["ods_order_all"] = "{{ ref('ods_order').render() }}"
    start = "CAST('{{ model.batch.event_time_start.strftime(\"%Y-%m-%d\") }}' AS DATE)"
    end = "(CAST('{{ model.batch.event_time_end.strftime(\"%Y-%m-%d\") }}' AS DATE) - 1)"
    for t in TABLES:
        sql = _render(t, start, end, refs, str(data.resolve()))
        config = ("{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ds', "
                  f"begin='{first}', batch_size='{batch_size}', lookback=0) }}}}")
        (root / "models" / f"{t}.sql").write_text(config + "\n\n" + sql + "\n")
    return root
