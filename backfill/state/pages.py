"""Narrow ledger reads for the Data Backfill Instances page (and `--watch`, once a second).

A backfill may hold 100,000 instances: counts and per-date roll-ups are grouped in the database, and
the instance list reads only the columns the page shows (no SQL text, no JSON columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .ledger import Ledger
from .schema import T_INSTANCES

__all__ = ["DateCount", "PageRow", "date_counts", "page_rows", "status_counts"]

_C = T_INSTANCES.c


@dataclass(frozen=True)
class PageRow:
    """What the page shows of one instance."""

    id: str
    backfill: str
    table: str
    ds: str
    group: int
    mode: str
    status: str
    attempts: int
    started_at: float | None
    ended_at: float | None
    rows: int | None
    error: str | None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class DateCount:
    backfill: str
    ds: str
    status: str
    count: int
    started_at: float | None  # the first start among them
    ended_at: float | None  # the last end among them


def _filters(backfill: str | None, status: str | None = None, ds: str | None = None) -> list[Any]:
    where: list[Any] = []
    if backfill:
        where.append(_C.backfill == backfill)
    if status:
        where.append(_C.status == status)
    if ds:
        where.append(_C.ds.like(f"{ds}%"))
    return where


def status_counts(ledger: Ledger, backfill: str | None = None) -> dict[str, dict[str, int]]:
    """backfill -> status -> number of instances, backfills by name."""
    q = (sa.select(_C.backfill, _C.status, sa.func.count()).where(*_filters(backfill))
         .group_by(_C.backfill, _C.status).order_by(_C.backfill, _C.status))
    out: dict[str, dict[str, int]] = {}
    with ledger.engine.connect() as conn:
        for b, st, n in conn.execute(q):
            out.setdefault(str(b), {})[str(st)] = int(n)
    return out


def date_counts(ledger: Ledger, backfill: str | None, status: str | None = None,
                ds: str | None = None) -> list[DateCount]:
    q = (sa.select(_C.backfill, _C.ds, _C.status, sa.func.count(), sa.func.min(_C.started_at),
                   sa.func.max(_C.ended_at))
         .where(*_filters(backfill, status, ds)).group_by(_C.backfill, _C.ds, _C.status)
         .order_by(_C.backfill, _C.ds, _C.status))
    with ledger.engine.connect() as conn:
        return [DateCount(str(b), str(d), str(s), int(n), lo, hi) for b, d, s, n, lo, hi in conn.execute(q)]


def page_rows(ledger: Ledger, backfill: str | None = None, status: str | None = None,
              ds: str | None = None, ids: Sequence[str] | None = None) -> list[PageRow]:
    q = sa.select(_C.id, _C.backfill, _C.table_name, _C.ds, _C.grp, _C.mode, _C.status, _C.attempts,
                  _C.started_at, _C.ended_at, _C.rows, _C.error).where(*_filters(backfill, status, ds))
    if ids is not None:
        q = q.where(_C.id.in_(list(ids)))
    q = q.order_by(_C.backfill, _C.seq)
    with ledger.engine.connect() as conn:
        return [PageRow(str(i), str(b), str(t), str(d), int(g), str(m), str(s), int(a), lo, hi, n, e)
                for i, b, t, d, g, m, s, a, lo, hi, n, e in conn.execute(q)]
