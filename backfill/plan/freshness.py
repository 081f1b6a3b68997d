"""Staleness by lineage, from the ledger: which recorded partitions were computed from inputs that
changed since (`status`, `why`).

A partition is as current as its oldest column: a field backfill rewrites some columns and leaves
the others as they were computed, from the inputs of their time. So a partition is judged by when
its oldest column was written (lineage.oldest_write), and what it read by when those inputs were
last written (any column). Transitively, a partition that read a stale one is stale too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..spec.model import Project
from ..state.fingerprints import template_fingerprint
from ..state.ledger import InstanceRow
from .lineage import WrittenTimes, oldest_write, stale_by_reads
from .partition_ranges import expand, ranges_of

__all__ = ["stale_by_ledger", "stale_reasons"]

Key = tuple[str, str]


class ReadShown(Protocol):
    @property
    def table(self) -> str: ...
    @property
    def ranges(self) -> list[list[str]] | str | None: ...
    @property
    def instances(self) -> list[list[str]]: ...


def _times(ledger: Any, project: Project) -> tuple[dict[Key, float], dict[Key, float], dict[Key, dict[str, float]]]:
    """(last write per partition, its oldest column's write, {field: write} per partition)."""
    columns: dict[Key, dict[str, float]] = ledger.field_times()
    latest = {k: max(v.values()) for k, v in columns.items()}
    oldest: dict[Key, float] = {}
    for (t, ds), fields in columns.items():
        table = project.tables.get(t)
        when = oldest_write(fields, table.field_names if table is not None else ())
        if when is not None:
            oldest[(t, ds)] = when
    return latest, oldest, columns


def stale_by_ledger(ledger: Any, project: Project) -> dict[Key, str]:
    """(table, ds) -> why, for every recorded partition whose read set saw a partition rewritten (or
    stale) after its oldest column was written."""
    from ..sql.readsets import read_set_of

    reads = {k: read_set_of(v) for k, v in ledger.partition_reads().items()}
    if not reads:
        return {}
    latest, oldest, _ = _times(ledger, project)
    return stale_by_reads(WrittenTimes(latest), oldest, reads)


def stale_reasons(ledger: Any, project: Project, row: InstanceRow, reads: Sequence[ReadShown],
                  ds_of: Callable[[str], str | None]) -> list[str]:
    """Why a successful instance's partition (the columns it wrote) is stale, in words; [] if current.
    `ds_of`: an upstream instance id -> its data timestamp."""
    if row.status != "success":
        return []
    out: list[str] = []
    table = project.tables.get(row.table)
    if table is None:
        out.append(f"table {row.table} is no longer declared in the specs")
    elif row.template_fingerprint and row.template_fingerprint != template_fingerprint(table, project):
        out.append(f"the spec of {row.table} (template, fields or key) changed since it ran")
    latest, _, columns = _times(ledger, project)
    needed = (*row.fields, *row.linked) if row.fields else (table.field_names if table is not None else ())
    mine = oldest_write(columns.get((row.table, row.ds), {}), needed) or row.ended_at or 0.0
    for read in reads:
        if isinstance(read.ranges, list):
            dss = [ds for first, last in read.ranges for ds in expand(first, last)]
        elif read.ranges == "all":
            dss = sorted(ds for t, ds in latest if t == read.table)
        else:
            dss = [d for d in (ds_of(i) for i, _s in read.instances) if d is not None] or [row.ds]
        later = [ds for ds in dss if latest.get((read.table, ds), 0.0) > mine]
        if later:
            spans = ", ".join(a if a == b else f"{a}..{b}" for a, b in ranges_of(later, "T" in later[0]))
            out.append(f"{read.table} {spans} written after it")
    if not out:  # nothing it read changed since, but something it read is itself stale
        upstream = stale_by_ledger(ledger, project).get((row.table, row.ds), "")
        if upstream.endswith(" is stale"):
            out.append(upstream)
    return out
