"""What an apply runs, decided from its plans alone: pure, no ledger or engine calls.

Enters: the backfill plans (each instance already marked new, stale, failed or done against a
ledger snapshot), the table graph, the ids the ledger still holds `pending`, and the time.
Leaves: one `Decision` per backfill, in dependency order, naming the instances to record and run
and whether the backfill waits for its scheduled runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, replace
from datetime import datetime

from ..plan.dag import topological_order
from ..plan.lineage import WriteIndex, upstream_ids
from ..plan.planner import BackfillPlan, PlannedInstance

__all__ = ["Decision", "decide", "is_scheduled", "order_backfills"]


@dataclass(frozen=True)
class Decision:
    plan: BackfillPlan
    todo: tuple[PlannedInstance, ...]  # recorded and run; the rest of the plan is done
    scheduled: bool  # its runtime is still ahead: recorded `waiting`, started by `serve`


def decide(plans: Sequence[BackfillPlan], graph: Mapping[str, Iterable[str]], pending: Set[str],
           now: float, failed_absent: Mapping[tuple[str, str], str] | None = None) -> list[Decision]:
    """Every backfill in dependency order with the instances that must run: not done, or still
    pending from an apply that stopped before running them.

    Their `upstream` becomes the instances recorded by this apply (any backfill, group or date) that
    write a partition they read, and the recorded instances that ended badly without writing a
    partition they read (`failed_absent`, which this apply does not write): such a failure blocks its
    readers, never lets them compute from the missing partition and be called current. A partition
    its own backfill writes is waited for there only (two backfills writing the same partition would
    otherwise wait for each other: the later write makes the reader stale, and the next apply reruns
    it). Backfills whose instances read what another one writes come after it."""
    todo = {plan.key: [p for p in plan.instances if p.action != "done" or p.id in pending] for plan in plans}
    index = WriteIndex((p.id, p.table, p.ds) for items in todo.values() for p in items)
    owner = {p.id: key for key, items in todo.items() for p in items}
    after: dict[str, set[str]] = {plan.key: set() for plan in plans}
    failed = WriteIndex((iid, t, ds) for (t, ds), iid in (failed_absent or {}).items()
                        if ds not in set(index.dates(t)))
    for key, items in todo.items():
        fixed = []
        for p in items:
            ups = tuple(_own_first(upstream_ids(p.id, p.reads, index), key, owner))
            if failed.tables():
                ups = (*ups, *(u for u in upstream_ids(p.id, p.reads, failed) if u not in ups))
            after[key].update(owner[u] for u in ups if u in owner and owner[u] != key)
            fixed.append(p if ups == p.upstream else replace(p, upstream=ups))
        todo[key] = fixed
    return [Decision(plan, tuple(todo[plan.key]), is_scheduled(plan, now))
            for plan in order_backfills(plans, graph, after)]


def _own_first(ups: Iterable[str], key: str, owner: Mapping[str, str]) -> list[str]:
    """Writers of what an instance of backfill `key` reads, less those of other backfills of a partition
    that `key` itself writes in this apply."""
    ups = list(ups)
    mine = {tuple(u.rsplit("/", 2)[1:]) for u in ups if owner.get(u) == key}  # (table, ds) it writes itself
    if not mine:
        return ups
    return [u for u in ups if owner.get(u) == key or tuple(u.rsplit("/", 2)[1:]) not in mine]


def is_scheduled(plan: BackfillPlan, now: float) -> bool:
    return bool(plan.runtime) and datetime.fromisoformat(str(plan.runtime)).timestamp() > now


def order_backfills(plans: Sequence[BackfillPlan], graph: Mapping[str, Iterable[str]],
                    after: Mapping[str, set[str]] | None = None) -> list[BackfillPlan]:
    """Backfills in dependency order: one whose instances read partitions another one writes in this
    apply (`after`), else one that reads tables another writes, runs after it (ties and cycles keep
    the spec-file order)."""
    writes = {p.key: set(p.tables) for p in plans}
    reads = {p.key: {up for t in p.tables for up in _upstream_closure(t, graph)} for p in plans}
    edges = {p.key: [q.key for q in plans if q.key != p.key and reads[p.key] & writes[q.key]
                     and not (reads[q.key] & writes[p.key])] for p in plans}
    for key, before in (after or {}).items():
        for other in before:
            if key not in (after or {}).get(other, set()) and other not in edges[key]:
                edges[key].append(other)
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
