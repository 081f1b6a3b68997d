"""Template fingerprints: what `status` compares to decide staleness without rendering per date.

A table's template fingerprint digests everything of its spec that the SQL of *every* partition
depends on: the template source, the write signature (fields and types, primary key, partition
column and type), its kind (integration SQL runs in DuckDB), the project dialect and the engine
type. It leaves out params (per backfill) and the dates, so it is computed once per table from the
specs alone, in microseconds.

The ledger records it with every partition written (`bf_partitions.template_fingerprint`), taken
from the instance as it was planned (`bf_instances.template_fingerprint`), so a rerun of old
recorded SQL is never mistaken for a current write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .model import Project, Table

if TYPE_CHECKING:
    from .ledger import Ledger
    from .planner import BackfillPlan

__all__ = ["refresh_done", "template_fingerprint", "write_signature"]


def write_signature(table: Table) -> str:
    """The shape the tool writes (the same text as `ProjectCompiler.write_signature`)."""
    cols = ",".join(f"{f.name} {f.type}" for f in table.fields)
    part_type = "TIMESTAMP" if table.hourly else "DATE"
    return f"{cols}|pk={','.join(table.primary_key)}|{table.partition} {part_type}"


def template_fingerprint(table: Table, project: Project) -> str:
    h = hashlib.sha256()
    parts = ("template/1", table.template.source, write_signature(table), table.kind, project.dialect,
             project.engine.type)
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def refresh_done(project: Project, ledger: Ledger, plans: Iterable[BackfillPlan]) -> int:
    """Record the current template fingerprint on partitions a plan finds done (SQL unchanged).

    A template edit that leaves some dates' SQL as it was (a `{% if ds == ... %}` branch, a change of a
    field type the SQL does not show) changes the template fingerprint of every date; `apply` finds
    those dates done and runs nothing, and this keeps `status` from calling them stale forever."""
    current = {name: template_fingerprint(t, project) for name, t in project.tables.items()}
    recorded: dict[tuple[str, str], set[str | None]] = {}
    for table, ds, _field, tfp in ledger.partition_states():
        recorded.setdefault((table, ds), set()).add(tfp)
    todo: dict[tuple[str, str, str], str] = {}
    for plan in plans:
        for i in plan.instances:
            if i.action != "done" or i.mode != "run" or i.table not in current:
                continue
            if recorded.get((i.table, i.ds), {current[i.table]}) - {current[i.table]}:
                todo[(i.table, i.ds, i.table_fingerprint)] = current[i.table]
    ledger.refresh_template_fingerprints([(*k, v) for k, v in sorted(todo.items())])
    return len(todo)
