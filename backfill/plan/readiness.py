"""Upstream readiness: is every partition an instance reads there, or written by the plan first?

For the instances a plan runs: a read partition of a table that neither the plans nor the ledger
ever wrote is refused (`never_built`: one `error:` line naming the table, the dates and what would
build it); a read partition missing from a table that exists is a warning (`Missing`), listed per
table as compact date ranges with the instances that read it (a 7-day window reaching before the
first loaded day, typically). Ranges without an end and "all" reads are not enumerated.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..errors import UserError
from ..spec.model import Project
from ..sql.context import fmt_date
from .dag import downstream_of
from .lineage import WriteIndex
from .planner import ENDED_BADLY, BackfillPlan, LedgerView

__all__ = ["Missing", "check_readiness", "compact", "failed_absent"]

_LIMIT = 20_000  # partitions enumerated per read range at most (a window, not a decade)
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Missing:
    table: str
    ranges: tuple[str, ...]  # compact: "2026-06-18..2026-06-23"
    readers: tuple[str, ...]  # instance ids, sorted
    failed: tuple[str, ...] = ()  # the recorded instances of these partitions that did not succeed

    def one_line(self) -> str:
        shown = ", ".join(self.readers[:3]) + (f" and {len(self.readers) - 3} more" if len(self.readers) > 3 else "")
        if self.failed:
            more = f" and {len(self.failed) - 1} more" if len(self.failed) > 1 else ""
            return (f"warning: {self.table} {', '.join(self.ranges)}: not in the ledger; {self.failed[0]}{more} "
                    f"did not succeed, so its readers are blocked until it does (read by {shown})")
        return (f"warning: {self.table} {', '.join(self.ranges)}: read but neither written by this plan nor "
                f"present in the ledger (read by {shown}); those reads see no rows")


def _partitions(lo: str, hi: str, hourly: bool) -> Iterable[str]:
    """The partitions from `lo` to `hi`, both included (ISO texts: parsed and written by C code, not
    strptime: this runs for every read range of every instance a plan runs)."""
    if hourly:
        t, end, step = datetime.fromisoformat(lo), datetime.fromisoformat(hi), timedelta(hours=1)
        for _ in range(_LIMIT):
            if t > end:
                return
            yield t.isoformat(timespec="hours")
            t += step
        return
    d, last = date.fromisoformat(lo), date.fromisoformat(hi)
    for _ in range(_LIMIT):
        if d > last:
            return
        yield d.isoformat()
        d += _DAY


def compact(dss: Iterable[str], hourly: bool) -> tuple[str, ...]:
    """Sorted partitions as runs: ("2026-07-01..2026-07-03", "2026-07-05")."""
    fmt, step = ("%Y-%m-%dT%H", timedelta(hours=1)) if hourly else ("%Y-%m-%d", timedelta(days=1))
    out: list[list[str]] = []
    for ds in sorted(set(dss)):
        if out and fmt_date(datetime.strptime(out[-1][1], fmt) + step, fmt) == ds:
            out[-1][1] = ds
        else:
            out.append([ds, ds])
    return tuple(a if a == b else f"{a}..{b}" for a, b in out)


def check_readiness(project: Project, plans: Sequence[BackfillPlan], view: LedgerView,
                    graph: Mapping[str, Iterable[str]],
                    failed: Mapping[tuple[str, str], str] | None = None) -> list[Missing]:
    """The missing upstream partitions, per table; raises UserError for a never-built table. `failed`:
    `failed_absent(view)`, when the caller has it already."""
    index = WriteIndex((i.id, i.table, i.ds) for p in plans for i in p.instances)
    present = {t: set(view.times.present(t)) for t in project.tables}
    for table, ds in view.partitions:
        present.setdefault(table, set()).add(ds)
    built = {t for t, dss in present.items() if dss} | index.tables()
    never: dict[str, tuple[BackfillPlan, list[str], set[str]]] = {}
    missing: dict[str, dict[str, list[str]]] = {}
    written: dict[str, set[str]] = {}  # per table read: partitions the plans write or the ledger has
    now = time.time()
    for plan in plans:
        if plan.runtime and datetime.fromisoformat(plan.runtime).timestamp() > now:
            continue  # starts later (`serve`): what it reads may be built by then
        for i in plan.instances:
            if i.action == "done":
                continue
            for table, ranges in i.reads:
                if table not in project.tables:
                    continue
                if table not in built:
                    entry = never.setdefault(table, (plan, [], set()))
                    entry[1].append(i.id)
                    if isinstance(ranges, str):
                        entry[2].add("every partition")
                    else:
                        entry[2].update(f"{lo or '…'}..{hi or '…'}" if lo != hi else str(lo) for lo, hi in ranges)
                    continue
                if isinstance(ranges, str):
                    continue
                hourly = project.tables[table].hourly
                there = written.get(table)
                if there is None:
                    there = written[table] = set(index.dates(table)) | present.get(table, set())
                for lo, hi in ranges:
                    if lo is None or hi is None:
                        continue
                    for ds in _partitions(lo, hi, hourly):
                        if ds not in there:
                            missing.setdefault(table, {}).setdefault(ds, []).append(i.id)
    if never:
        table = sorted(never)[0]
        plan, readers, dates = never[table]
        raise UserError(_never_built(project, plan, table, readers, dates, graph, plans))
    failed = failed_absent(view) if failed is None else failed
    out: list[Missing] = []
    for t, per in sorted(missing.items()):
        bad = {ds: rs for ds, rs in per.items() if (t, ds) in failed}
        for part, ids in ((bad, tuple(sorted(failed[(t, ds)] for ds in bad))),
                          ({ds: rs for ds, rs in per.items() if ds not in bad}, ())):
            if part:
                out.append(Missing(t, compact(part, project.tables[t].hourly),
                                   tuple(sorted({r for rs in part.values() for r in rs})), ids))
    return out


def _span(dates: set[str]) -> str:
    if "every partition" in dates:
        return "every partition"
    parts = sorted(dates)
    firsts = [p.split("..")[0] for p in parts]
    lasts = [p.split("..")[-1] for p in parts]
    lo, hi = min(firsts), max(lasts)
    return lo if lo == hi else f"{lo}..{hi}"


def _never_built(project: Project, plan: BackfillPlan, table: str, readers: list[str], dates: set[str],
                 graph: Mapping[str, Iterable[str]], plans: Sequence[BackfillPlan]) -> str:
    reader = sorted(readers)[0].split("/")[1]
    planned = {p.key for p in plans}
    builders = []
    for spec in sorted(project.backfills.values(), key=lambda b: b.key):
        if spec.key in planned:
            continue
        tables = {t.table for t in spec.targets}
        if spec.scope.mode == "downstream":
            tables |= set(downstream_of(sorted(tables), graph, spec.scope.depth, spec.scope.exclude))
        if table in tables:
            builders.append(spec.name or spec.key)
    ups = sorted(graph.get(table, ()))
    if builders:
        fix = f"apply backfill {builders[0]} first (it builds {table})"
    elif ups:
        fix = f"add {table} to the targets, or use `scope: downstream` from {', '.join(ups)}"
    else:
        fix = f"add {table} to the targets of a backfill"
    return (f"{plan.spec_file}: {reader} reads {table} {_span(dates)}, which was never built and this plan "
            f"does not build it; {fix}")


def failed_absent(view: LedgerView) -> dict[tuple[str, str], str]:
    """Partitions the ledger does not hold whose recorded instance ended badly (failed, killed, paused,
    blocked): (table, ds) -> that instance (the first by id where several backfills wrote it)."""
    out: dict[tuple[str, str], str] = {}
    for iid in sorted(view.instances):
        status = view.instances[iid][0]
        if status not in ENDED_BADLY:
            continue
        _, table, ds = iid.rsplit("/", 2)
        if (table, ds) not in view.written and (table, ds) not in view.partitions:
            out.setdefault((table, ds), iid)
    return out
