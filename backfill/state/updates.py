"""A batch of instance changes, attempts and partition records, written in one transaction.

Thousands of status changes a second reach the ledger during a run of small partitions, so each
statement shape is compiled once per dialect and run as one `executemany` of plain tuples: building
SQLAlchemy parameters row by row cost more than SQLite's own work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import T_ATTEMPTS, T_INSTANCES, T_PARTITIONS

__all__ = ["chunks", "insert_many", "write_updates"]

Keyed = tuple[str, dict[str, Any]]
_COMPILED: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def write_updates(conn: Connection, updates: Sequence[Mapping[str, Any]], written: set[str] | None = None) -> set[str]:
    """Each update: {"id": instance id, "values": {...instance columns...}, "attempt": {...} or None,
    "partitions": [(table, ds, field, fp[, template_fp])] or None}; the optional 5th element of a
    partition is the table's template fingerprint (fingerprints.py). The batch is merged first (later
    changes win, as if applied one by one), then written with one executemany per statement shape.

    `written`: attempt ids the caller knows are in the ledger (its own earlier batches); without it the
    ledger is asked. Returns the attempt ids this batch inserted."""
    now = time.time()
    instances: dict[str, dict[str, Any]] = {}
    attempts: dict[str, dict[str, Any]] = {}
    partitions: dict[tuple[str, str], tuple[bool, dict[str, dict[str, Any]]]] = {}
    for u in updates:
        if u.get("values"):
            instances.setdefault(u["id"], {}).update(u["values"])
        if u.get("attempt"):
            attempts.setdefault(u["attempt"]["id"], {}).update(u["attempt"])
        for part in u.get("partitions") or ():
            table, ds, field, fp = part[:4]
            row = {"table_name": table, "ds": ds, "field": field, "fingerprint": fp, "instance_id": u["id"],
                   "written_at": now, "template_fingerprint": part[4] if len(part) > 4 else None}
            reset, rows = partitions.get((table, ds), (False, {}))
            if field == "*":  # the whole partition: earlier field records are replaced too
                reset, rows = True, {}
            rows[field] = row
            partitions[(table, ds)] = (reset, rows)
    for keys, group in _by_keys(instances.items()):
        _many(conn, "instance", keys, lambda k: T_INSTANCES.update().where(T_INSTANCES.c.id == sa.bindparam("_id"))
              .values({c: sa.bindparam(c) for c in (*k, "updated_at")}),
              [{**v, "_id": i, "updated_at": now} for i, v in group])
    inserted: set[str] = set()
    if attempts:
        known = written if written is not None else _known_attempts(conn, list(attempts))
        fresh = [(i, a) for i, a in attempts.items() if i not in known]
        for keys, group in _by_keys(fresh):
            _many(conn, "attempt+", keys, lambda k: T_ATTEMPTS.insert().values({c: sa.bindparam(c) for c in k}),
                  [a for _i, a in group])
        inserted = {i for i, _a in fresh}
        for keys, group in _by_keys((i, a) for i, a in attempts.items() if i in known):
            cols = tuple(k for k in keys if k != "id")
            _many(conn, "attempt", cols, lambda k: T_ATTEMPTS.update().where(T_ATTEMPTS.c.id == sa.bindparam("_id"))
                  .values({c: sa.bindparam(c) for c in k}),
                  [{**{k: v for k, v in a.items() if k != "id"}, "_id": i} for i, a in group])
    if partitions:
        p = T_PARTITIONS.c
        whole = [{"t": t, "d": d} for (t, d), (reset, _rows) in partitions.items() if reset]
        fields = [{"t": t, "d": d, "f": f} for (t, d), (reset, rows) in partitions.items() if not reset for f in rows]
        if whole:
            _many(conn, "partition-", ("t", "d"), lambda k: T_PARTITIONS.delete().where(
                p.table_name == sa.bindparam("t"), p.ds == sa.bindparam("d")), whole)
        if fields:
            _many(conn, "field-", ("t", "d", "f"), lambda k: T_PARTITIONS.delete().where(
                p.table_name == sa.bindparam("t"), p.ds == sa.bindparam("d"), p.field == sa.bindparam("f")), fields)
        records = [r for _reset, rows in partitions.values() for r in rows.values()]
        _many(conn, "partition+", tuple(records[0]), lambda k: T_PARTITIONS.insert().values(
            {c: sa.bindparam(c) for c in k}), records)
    return inserted


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (all with the same keys) into `table` with one executemany of tuples."""
    if rows:
        keys = tuple(rows[0])
        _many(conn, f"insert:{table.name}", keys, lambda k: table.insert().values({c: sa.bindparam(c) for c in k}),
              list(rows))


def _many(conn: Connection, shape: str, keys: tuple[str, ...], build: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """One executemany of the statement `build(keys)` makes, compiled once per shape and dialect."""
    key = (conn.dialect.name, shape, keys)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = build(keys).compile(dialect=conn.dialect)
    if compiled.positional:
        names = compiled.positiontup
        pick = itemgetter(*names)  # one C call a row: a generator per row cost more than SQLite's insert
        conn.exec_driver_sql(compiled.string, [pick(r) for r in rows] if len(names) > 1 else
                             [(pick(r),) for r in rows])
    else:
        conn.exec_driver_sql(compiled.string, [dict(r) for r in rows])


def _known_attempts(conn: Connection, ids: list[str]) -> set[str]:
    known: set[str] = set()
    for chunk in chunks(ids, 500):
        known |= {r[0] for r in conn.execute(sa.select(T_ATTEMPTS.c.id).where(T_ATTEMPTS.c.id.in_(chunk)))}
    return known


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _by_keys(items: Iterable[Keyed]) -> list[tuple[tuple[str, ...], list[Keyed]]]:
    """Rows grouped by the set of columns they set: each group is one executemany."""
    groups: dict[tuple[str, ...], list[Keyed]] = {}
    for key, row in items:
        groups.setdefault(tuple(sorted(row)), []).append((key, row))
    return list(groups.items())
