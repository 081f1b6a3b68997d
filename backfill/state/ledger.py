"""The state ledger's queries: backfills, instances, attempts, partition fingerprints, saved plans.

SQLAlchemy Core over a SQLite file (default) or PostgreSQL. It is the record of what ran: Prefect's
own run history is not relied on. Schema version 2; `Ledger.open` creates, checks or migrates it
(tables in `schema.py`, the lock in `lock.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .claims import ClaimTable
from .lock import LockTable
from .schema import (
    ACTIVE,
    FINISHED,
    SCHEMA_VERSION,
    T_ATTEMPTS,
    T_BACKFILLS,
    T_INSTANCES,
    T_META,
    T_PARTITIONS,
    T_PLANS,
    InstanceRow,
    connect,
    instance_rows,
)
from .updates import chunks, insert_many, write_updates

__all__ = ["ACTIVE", "FINISHED", "SCHEMA_VERSION", "InstanceRow", "Ledger"]


class Ledger(LockTable, ClaimTable):
    """One ledger database. Safe to share between threads; every method is one transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, url: str, schema: str | None = None) -> Ledger:
        return cls(connect(url, schema))

    def close(self) -> None:
        self.engine.dispose()

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(T_META.c.value).where(T_META.c.key == "schema_version")).scalar_one())

    # ------------------------------------------------------------------ planning view
    def view_data(self) -> tuple[dict[tuple[str, str], dict[str, str]], dict[str, tuple[str, str]],
                                 dict[str, str], frozenset[str]]:
        with self.engine.connect() as conn:
            parts: dict[tuple[str, str], dict[str, str]] = {}
            for t, ds, f, fp in conn.execute(sa.select(T_PARTITIONS.c.table_name, T_PARTITIONS.c.ds,
                                                       T_PARTITIONS.c.field, T_PARTITIONS.c.fingerprint)):
                parts.setdefault((t, ds), {})[f] = fp
            insts = {i: (s, fp) for i, s, fp in conn.execute(
                sa.select(T_INSTANCES.c.id, T_INSTANCES.c.status, T_INSTANCES.c.fingerprint))}
            names: dict[str, str] = {}
            taken: set[str] = set()
            for name, key, _created in conn.execute(sa.select(T_BACKFILLS.c.name, T_BACKFILLS.c.spec_key,
                                                              T_BACKFILLS.c.created_at).order_by("created_at")):
                names.setdefault(key, name)
                taken.add(name)
        return parts, insts, names, frozenset(taken)

    def field_times(self) -> dict[tuple[str, str], dict[str, float]]:
        """(table, ds) -> {field: when it was last written}; '*': the whole partition's last write."""
        p = T_PARTITIONS.c
        out: dict[tuple[str, str], dict[str, float]] = {}
        with self.engine.connect() as conn:
            for t, d, f, w in conn.execute(sa.select(p.table_name, p.ds, p.field, p.written_at)):
                out.setdefault((str(t), str(d)), {})[str(f)] = float(w)
        return out

    def written_times(self) -> dict[tuple[str, str], float]:
        """(table, ds) -> when its partition was last written (any field)."""
        return {k: max(v.values()) for k, v in self.field_times().items()}

    def partition_reads(self, table: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """(table, ds) -> the read set its last write recorded (instances recorded with one only)."""
        p, i = T_PARTITIONS, T_INSTANCES
        q = sa.select(p.c.table_name, p.c.ds, p.c.written_at, i.c.reads).join(i, i.c.id == p.c.instance_id) \
            .where(i.c.reads.is_not(None), i.c.reads != "{}")
        if table:
            q = q.where(p.c.table_name == table)
        best: dict[tuple[str, str], tuple[float, str]] = {}
        with self.engine.connect() as conn:
            for t, d, w, r in conn.execute(q):
                key = (str(t), str(d))
                if key not in best or float(w) > best[key][0]:
                    best[key] = (float(w), str(r))
        return {k: json.loads(r) for k, (_, r) in best.items()}

    @staticmethod
    def empty_state_fingerprint() -> str:
        """`fingerprint_of_state` of a ledger that records nothing yet."""
        import hashlib

        return hashlib.sha256().hexdigest()[:16]

    def fingerprint_of_state(self) -> str:
        """Changes whenever anything a plan depends on changes (for refusing stale saved plans)."""
        import hashlib

        h = hashlib.sha256()
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(T_PARTITIONS).order_by(T_PARTITIONS.c.table_name, T_PARTITIONS.c.ds,
                                                                     T_PARTITIONS.c.field)):
                h.update(f"{row.table_name}|{row.ds}|{row.field}|{row.fingerprint}\n".encode())
            for row in conn.execute(sa.select(T_INSTANCES.c.id, T_INSTANCES.c.status,
                                              T_INSTANCES.c.fingerprint).order_by(T_INSTANCES.c.id)):
                h.update(f"{row.id}|{row.status}|{row.fingerprint}\n".encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ backfills and instances
    def record_backfill(self, conn: Connection, name: str, key: str, spec_file: str, runtime: str | None) -> None:
        now = time.time()
        found = conn.execute(sa.select(T_BACKFILLS.c.name).where(T_BACKFILLS.c.name == name)).first()
        if found:
            conn.execute(T_BACKFILLS.update().where(T_BACKFILLS.c.name == name).values(
                spec_key=key, spec_file=spec_file, runtime=runtime, updated_at=now, in_specs=True))
        else:
            conn.execute(T_BACKFILLS.insert().values(name=name, spec_key=key, spec_file=spec_file, runtime=runtime,
                                                     created_at=now, updated_at=now, in_specs=True))

    def enqueue(self, name: str, key: str, spec_file: str, runtime: str | None,
                rows: Sequence[Mapping[str, Any]]) -> None:
        """Record a backfill and (re)set the given instances to `pending`, in one transaction."""
        now = time.time()
        with self.engine.begin() as conn:
            self.record_backfill(conn, name, key, spec_file, runtime)
            ids = [r["id"] for r in rows]
            for chunk in chunks(ids, 500):
                conn.execute(T_INSTANCES.delete().where(T_INSTANCES.c.id.in_(chunk)))
            insert_many(conn, T_INSTANCES, [
                {**r, "status": "pending", "attempts": 0, "held": False, "kill_requested": False, "updated_at": now}
                for r in rows])

    def mark_deleted_specs(self, present_keys: Iterable[str]) -> list[str]:
        """Backfills whose spec file is gone: flagged (history kept), and returned."""
        keys = set(present_keys)
        with self.engine.begin() as conn:
            gone = [(n, k) for n, k in conn.execute(sa.select(T_BACKFILLS.c.name, T_BACKFILLS.c.spec_key))
                    if k not in keys]
            for name, _ in gone:
                conn.execute(T_BACKFILLS.update().where(T_BACKFILLS.c.name == name).values(in_specs=False))
        return sorted(n for n, _ in gone)

    def backfills(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(T_BACKFILLS).order_by(T_BACKFILLS.c.created_at))]

    def instances(self, backfill: str | None = None, status: str | tuple[str, ...] | None = None,
                  ds: str | None = None, ids: Sequence[str] | None = None) -> list[InstanceRow]:
        """Recorded instances, in backfill and plan order; `status`: one, or any of several."""
        q = sa.select(T_INSTANCES)
        if backfill:
            q = q.where(T_INSTANCES.c.backfill == backfill)
        if isinstance(status, tuple):
            q = q.where(T_INSTANCES.c.status.in_(status))
        elif status:
            q = q.where(T_INSTANCES.c.status == status)
        if ds:
            q = q.where(T_INSTANCES.c.ds.like(f"{ds}%"))
        if ids is not None:
            q = q.where(T_INSTANCES.c.id.in_(list(ids)))
        q = q.order_by(T_INSTANCES.c.backfill, T_INSTANCES.c.seq)
        with self.engine.connect() as conn:
            return instance_rows(conn.execute(q))

    def instance(self, instance_id: str) -> InstanceRow | None:
        found = self.instances(ids=[instance_id])
        return found[0] if found else None

    def outcomes(self, ids: Sequence[str]) -> dict[str, tuple[str, int | None, str | None]]:
        """(status, rows, error) of each of `ids`, without reading whole rows."""
        c = T_INSTANCES.c
        out: dict[str, tuple[str, int | None, str | None]] = {}
        with self.engine.connect() as conn:
            for n in range(0, len(ids), 5000):
                q = sa.select(c.id, c.status, c.rows, c.error).where(c.id.in_(list(ids[n:n + 5000])))
                out.update({r.id: (r.status, r.rows, r.error) for r in conn.execute(q)})
        return out

    def attempts(self, instance_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(T_ATTEMPTS).where(T_ATTEMPTS.c.instance_id == instance_id).order_by(T_ATTEMPTS.c.number))]

    def apply_updates(self, updates: Sequence[Mapping[str, Any]], written: set[str] | None = None) -> set[str]:
        """A batch of instance changes, attempts and partition records, in one transaction (updates.py).
        `written`: attempt ids known to be recorded already; returns the attempt ids inserted."""
        if not updates:
            return set()
        with self.engine.begin() as conn:
            return write_updates(conn, updates, written)

    def attempt_counts(self, ids: Sequence[str]) -> dict[str, int]:
        """instance id -> the highest attempt number recorded for it."""
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(ids), 500):
                q = sa.select(T_ATTEMPTS.c.instance_id, sa.func.max(T_ATTEMPTS.c.number)) \
                    .where(T_ATTEMPTS.c.instance_id.in_(chunk)).group_by(T_ATTEMPTS.c.instance_id)
                out.update({str(i): int(n) for i, n in conn.execute(q)})
        return out

    def set_flags(self, ids: Sequence[str], **values: Any) -> int:
        if not ids:
            return 0
        n = 0
        with self.engine.begin() as conn:
            for chunk in chunks(list(ids), 500):
                n += conn.execute(T_INSTANCES.update().where(T_INSTANCES.c.id.in_(chunk)).values(
                    updated_at=time.time(), **values)).rowcount or 0
        return n

    def flags(self, backfill: str, ids: Sequence[str]) -> dict[str, tuple[bool, bool]]:
        """instance id -> (held, kill_requested) of `ids`, instances of `backfill`, for the executor's
        polling: one indexed query reads only the backfill's flagged instances (polled twice a second
        during a run, an IN list of thousands of ids cost more than the run's own ledger writes)."""
        t = T_INSTANCES.c
        q = sa.select(t.id, t.held, t.kill_requested).where(
            t.backfill == sa.bindparam("b"), sa.or_(t.held == sa.true(), t.kill_requested == sa.true()))
        with self.engine.connect() as conn:
            flagged = {str(i): (bool(h), bool(k)) for i, h, k in conn.execute(q, {"b": backfill})}
        return {i: flagged.get(i, (False, False)) for i in ids}

    def partition_states(self, table: str | None = None) -> list[tuple[str, str, str, str | None]]:
        """(table, ds, field, template fingerprint or None) of every recorded partition."""
        return [(t, ds, f, tfp) for t, f, tfp, dss in self.partition_groups(table) for ds in dss]

    def partition_groups(self, table: str | None = None) -> list[tuple[str, str, str | None, list[str]]]:
        """(table, field, template fingerprint or None, the dates so recorded), for `status`.

        Grouped in the database and read through the DB-API cursor: ~100,000 partitions in a few hundred
        rows, a fraction of a second."""
        t = T_PARTITIONS
        q = sa.select(t.c.table_name, t.c.field, t.c.template_fingerprint, sa.func.aggregate_strings(t.c.ds, ","))
        if table:
            q = q.where(t.c.table_name == table)
        q = q.group_by(t.c.table_name, t.c.field, t.c.template_fingerprint)
        sql = str(q.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            cur.close()
        finally:
            raw.close()
        return [(str(tn), str(f), None if tfp is None else str(tfp), str(dss).split(","))
                for tn, f, tfp, dss in rows]

    def refresh_template_fingerprints(self, rows: Sequence[tuple[str, str, str, str]]) -> int:
        """(table, ds, sql fingerprint, template fingerprint): partitions still recorded with that SQL
        fingerprint get that template fingerprint. `apply` calls it for the instances it finds done, so a
        template edit that left some dates' SQL unchanged does not leave them stale in `status`."""
        if not rows:
            return 0
        t = T_PARTITIONS
        q = (t.update().where(t.c.table_name == sa.bindparam("t"), t.c.ds == sa.bindparam("d"),
                              t.c.fingerprint == sa.bindparam("f"),
                              sa.or_(t.c.template_fingerprint.is_(None),
                                     t.c.template_fingerprint != sa.bindparam("tf")))
             .values(template_fingerprint=sa.bindparam("tf")))
        with self.engine.begin() as conn:
            res = conn.execute(q, [{"t": a, "d": b, "f": c, "tf": d} for a, b, c, d in rows])
        return int(res.rowcount or 0)

    # ------------------------------------------------------------------ saved plans
    def plan_applied(self, plan_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(T_PLANS.c.plan_id).where(T_PLANS.c.plan_id == plan_id)).first() is not None

    def consume_plan(self, plan_id: str) -> bool:
        """True the first time a saved plan is applied; False if it was applied before."""
        try:
            with self.engine.begin() as conn:
                conn.execute(T_PLANS.insert().values(plan_id=plan_id, applied_at=time.time()))
            return True
        except sa.exc.IntegrityError:
            return False

