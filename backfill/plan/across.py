"""Staleness across backfills: a partition found done by its own backfill's plan must still run when
another backfill of the same apply rewrites a partition it reads (before it, in dependency order).

The planner decides this inside one backfill (`upstream ... runs first`); here the decision is carried
across the plans of one `plan` / `apply`, to a fixpoint (a rerun reader makes its own readers rerun).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .lineage import WriteIndex, upstream_ids
from .planner import BackfillPlan, PlannedInstance

__all__ = ["stale_across_backfills"]


def _runs(i: PlannedInstance) -> bool:
    return i.mode == "run" and i.action != "done"


def stale_across_backfills(plans: Sequence[BackfillPlan]) -> tuple[BackfillPlan, ...]:
    if len(plans) < 2:
        return tuple(plans)
    current = {p.key: list(p.instances) for p in plans}
    owner = {i.id: p.key for p in plans for i in p.instances}
    while True:
        index = WriteIndex((i.id, i.table, i.ds) for items in current.values() for i in items if _runs(i))
        changed = False
        for key, items in current.items():
            for n, i in enumerate(items):
                if i.action != "done" or i.mode != "run":
                    continue
                ups = [u for u in upstream_ids(i.id, i.reads, index) if owner[u] != key]
                if ups:
                    items[n] = replace(i, action="stale", reason=f"upstream {ups[0]} runs first")
                    changed = True
        if not changed:
            break
    return tuple(replace(p, instances=tuple(current[p.key])) if list(p.instances) != current[p.key] else p
                 for p in plans)
