"""Batches: consecutive partitions of one table inside one group, run as one statement.

Pure. The planner has placed every instance (group, position in the group, upstream); this groups
the instances that will run into batches of at most the table's `batch_size` and says, per table,
how it runs. A batch launches at the position of its first date, so an instance joins a batch only
when every instance it waits for that this plan runs launches no later than that (else the group's
date-by-date order could never start the batch), and never when it waits for a member of the same
batch (a partition of it reads another one being written by the same statement).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from ..spec.model import Backfill, Project
from ..sql.compiler import ProjectCompiler

__all__ = ["TableRun", "assign_batches", "batch_sizes", "group_batches", "table_runs"]

RunMode = Literal["partition", "range", "union"]


@dataclasses.dataclass(frozen=True)
class TableRun:
    """How one table of a backfill runs."""

    table: str
    batch_size: int
    mode: RunMode  # partition: one statement per partition; range: the template's own range; union: tool-batched
    ranged: bool = False  # the template is a range template (it runs per partition with start_ds = end_ds)
    fields: bool = False  # a field selection: always per partition

    def describe(self) -> str:
        if self.mode == "range":
            return f"batches of {self.batch_size} (range template: one statement per batch)"
        if self.mode == "union":
            return f"batches of {self.batch_size} (tool-batched: UNION ALL of the per-date SQL)"
        why = " (field selection)" if self.fields and self.batch_size > 1 else ""
        return "per partition" + (", range template" if self.ranged else "") + why


def batch_sizes(project: Project, spec: Backfill, tables: Sequence[str]) -> dict[str, int]:
    """The batch size of each table in this backfill: the target's, else the table's."""
    override = {t.table: t.batch_size for t in spec.targets if t.batch_size is not None}
    return {t: int(override.get(t) or project.tables[t].batch_size) for t in tables}


def table_runs(project: Project, compiler: ProjectCompiler, spec: Backfill, tables: Sequence[str]
               ) -> tuple[TableRun, ...]:
    sizes = batch_sizes(project, spec, tables)
    chosen = {t.table: t.fields for t in spec.targets}
    out = []
    for name in tables:
        ranged = compiler.ranged(project.tables[name])
        fields = bool(chosen.get(name))
        size = sizes[name]
        mode: RunMode = "partition" if size <= 1 or fields else "range" if ranged else "union"
        out.append(TableRun(name, size, mode, ranged, fields))
    return tuple(out)


def _stamp(ds: str) -> datetime:
    return datetime.fromisoformat(ds)


@dataclasses.dataclass
class _Open:
    start: int  # position the batch launches at
    members: list[Any]
    ids: set[str]


def group_batches(instances: Sequence[Any], runs: Mapping[str, TableRun], hourly: Mapping[str, bool]
                  ) -> list[list[Any]]:
    """Batches of two or more instances (each a list in execution order), from the plan's instances in
    execution order (group, date, dependency order of tables)."""
    runnable = {i.id: i for i in instances if i.mode == "run" and i.action != "done"}
    launch: dict[str, int] = {}
    open_: dict[tuple[int, str], _Open] = {}
    batches: list[list[Any]] = []
    for inst in instances:
        key = (inst.group, inst.table)
        run = runs.get(inst.table)
        if inst.id not in runnable or run is None or run.mode == "partition" or inst.fields:
            open_.pop(key, None)  # what does not join a batch ends the open one: batches are consecutive
            if inst.id in runnable:
                launch[inst.id] = inst.position
            continue
        b = open_.get(key)
        step = timedelta(hours=1) if hourly.get(inst.table) else timedelta(days=1)
        if b is not None and len(b.members) < run.batch_size and _follows(b.members[-1], inst, step) and \
                _may_join(inst, b, runnable, launch):
            b.members.append(inst)
            b.ids.add(inst.id)
            launch[inst.id] = b.start
            continue
        b = _Open(inst.position, [inst], {inst.id})
        open_[key] = b
        batches.append(b.members)
        launch[inst.id] = inst.position
    return [m for m in batches if len(m) > 1]


def _follows(last: Any, inst: Any, step: timedelta) -> bool:
    return 0 <= inst.position - last.position <= 1 and abs(_stamp(inst.ds) - _stamp(last.ds)) == step


def _may_join(inst: Any, batch: _Open, runnable: Mapping[str, Any], launch: Mapping[str, int]) -> bool:
    """Not when a member reads it or it reads a member (a table reading its own previous day, in
    descending order), nor when it waits for an instance of its group that starts after the batch."""
    if any(inst.id in m.upstream for m in batch.members):
        return False
    for up in inst.upstream:
        if up in batch.ids:
            return False
        other = runnable.get(up)
        if other is None or other.group != inst.group:
            continue  # done already, or in another group (groups do not wait for each other's dates)
        if launch.get(up, batch.start + 1) > batch.start:
            return False
    return True


def assign_batches(instances: Sequence[Any], runs: Sequence[TableRun], project: Project,
                   compiler: ProjectCompiler, params: Mapping[str, Any], name: str) -> list[Any]:
    """The instances with their batch (and, for a range template, the batch's SQL) filled in."""
    by_table = {r.table: r for r in runs}
    hourly = {t: project.tables[t].hourly for t in by_table}
    changes: dict[str, dict[str, Any]] = {}
    for members in group_batches(instances, by_table, hourly):
        table = project.tables[members[0].table]
        stamps = sorted(_stamp(m.ds) for m in members)
        dss = sorted(m.ds for m in members)
        batch = f"{name}/{table.name}/{dss[0]}..{dss[-1]}"
        sql = compiler.compile_range(table, stamps[0], stamps[-1], params) \
            if by_table[table.name].mode == "range" else None
        for m in members:
            changes[m.id] = {"batch": batch, "batch_sql": sql}
    out = []
    for inst in instances:
        run = by_table.get(inst.table)
        ranged = bool(run and run.ranged and not inst.fields)
        change = changes.get(inst.id)
        if change or ranged:
            inst = dataclasses.replace(inst, ranged=ranged, **(change or {}))
        out.append(inst)
    return out
