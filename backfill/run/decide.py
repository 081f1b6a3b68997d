"""What an apply runs, decided from its plans alone: pure, no ledger or engine calls.

Enters: the backfill plans (each instance already marked new, stale, failed or done against a
ledger snapshot), the table graph, the ids the ledger still holds `pending`, and the time.
Leaves: one `Decision` per backfill, in dependency order, naming the instances to record and run
and whether the backfill waits for its scheduled runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime

from ..plan.dag import topological_order
from ..plan.planner import BackfillPlan, PlannedInstance

__all__ = ["Decision", "decide", "is_scheduled", "order_backfills"]


@dataclass(frozen=True)
class Decision:
    plan: BackfillPlan
    todo: tuple[PlannedInstance, ...]  # recorded and run; the rest of the plan is done
    scheduled: bool  # its runtime is still ahead: recorded `waiting`, started by `serve`


def decide(plans: Sequence[BackfillPlan], graph: Mapping[str, Iterable[str]], pending: Set[str],
           now: float) -> list[Decision]:
    """Every backfill in dependency order with the instances that must run: not done, or still
    pending from an apply that stopped before running them."""
    return [Decision(plan, tuple(p for p in plan.instances if p.action != "done" or p.id in pending),
                     is_scheduled(plan, now))
            for plan in order_backfills(plans, graph)]


def is_scheduled(plan: BackfillPlan, now: float) -> bool:
    return bool(plan.runtime) and datetime.fromisoformat(str(plan.runtime)).timestamp() > now


def order_backfills(plans: Sequence[BackfillPlan], graph: Mapping[str, Iterable[str]]) -> list[BackfillPlan]:
    """Backfills in dependency order: one that reads tables another writes runs after it (ties and
    cycles keep the spec-file order)."""
    writes = {p.key: set(p.tables) for p in plans}
    reads = {p.key: {up for t in p.tables for up in _upstream_closure(t, graph)} for p in plans}
    edges = {p.key: [q.key for q in plans if q.key != p.key and reads[p.key] & writes[q.key]
                     and not (reads[q.key] & writes[p.key])] for p in plans}
    by_key = {p.key: p for p in plans}
    return [by_key[k] for k in topological_order(by_key, edges)]


def _upstream_closure(table: str, graph: Mapping[str, Iterable[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(table, ()))
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo.extend(graph.get(t, ()))
    return seen
