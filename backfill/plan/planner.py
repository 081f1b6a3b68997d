"""The pure planner: project + backfill spec + ledger view -> plan. No I/O, deterministic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Literal, cast

from ..errors import SpecError, SpecErrors
from ..spec.model import Backfill, DateInterval, Project
from ..sql.compiler import ProjectCompiler
from ..sql.readsets import ReadSet
from .batches import TableRun, assign_batches, table_runs
from .dag import downstream_of, topological_order
from .dates import MAX_INSTANCES, count_timestamps, expand_timestamps, split_groups
from .graph import ds_text, project_graph, read_location
from .lineage import WriteIndex, WrittenTimes, oldest_write, order_notes, partition_cycle, rewritten_after, upstream_ids

__all__ = ["Action", "BackfillPlan", "LedgerView", "PlannedInstance", "ds_text", "expand_timestamps",
           "plan_backfill", "project_graph", "split_groups"]

Action = Literal["new", "stale", "done", "failed"]
Mode = Literal["run", "skip", "dry_run"]


@dataclass(frozen=True)
class LedgerView:
    """What the ledger already holds, as the planner needs it."""

    partitions: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)  # (table, ds) -> {field: fp}
    instances: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # instance id -> (status, fingerprint)
    names: Mapping[str, str] = field(default_factory=dict)  # backfill spec key -> its recorded name
    taken_names: frozenset[str] = frozenset()
    written: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (table, ds) -> last write time
    written_day: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (table, YYYY-MM-DD) -> latest
    columns_written: Mapping[tuple[str, str], Mapping[str, float]] = field(default_factory=dict)  # {field: time}

    @property
    def is_empty(self) -> bool:
        return not (self.partitions or self.instances or self.names or self.taken_names or self.written)

    @cached_property
    def times(self) -> WrittenTimes:
        return WrittenTimes(self.written)


@dataclass(frozen=True)
class PlannedInstance:
    id: str
    table: str
    ds: str
    group: int  # 1-based
    position: int  # index of its date inside the group, 0-based
    mode: Mode
    action: Action
    sql: str
    fingerprint: str  # of `sql`: what this instance executes
    table_fingerprint: str  # of the whole table's SQL for this ds: what its fields are recorded with
    upstream: tuple[str, ...]
    fields: tuple[str, ...] | None = None  # None: the entire table
    linked: tuple[str, ...] = ()
    reason: str = ""  # why it runs: what a reviewer reads next to `new` / `stale` / `failed`
    batch: str | None = None  # the batch it runs in (batches.py): `BACKFILL/TABLE/FIRST..LAST`
    batch_sql: str | None = None  # a range template's SELECT over its whole batch
    ranged: bool = False  # its SQL is a range template's (it selects the partition column too)
    reads: ReadSet = ()  # the partitions it reads, per upstream table (sql/readsets.py)


@dataclass(frozen=True)
class BackfillPlan:
    key: str
    name: str
    spec_file: str
    runtime: str | None
    order: str
    group_dates: tuple[tuple[str, ...], ...]  # the dates of each group, in execution order
    tables: tuple[str, ...]  # dependency order
    downstream_added: tuple[str, ...]
    instances: tuple[PlannedInstance, ...]
    retries: int = 0
    retry_delay: float = 0.0
    runs: tuple[TableRun, ...] = ()  # how each table runs: per partition or in batches
    notes: tuple[str, ...] = ()  # what a reviewer should know about the order: reads across groups

    def counts(self) -> dict[str, int]:
        out = {"new": 0, "stale": 0, "done": 0, "failed": 0}
        for i in self.instances:
            out[i.action] += 1
        return out

    @property
    def to_run(self) -> tuple[PlannedInstance, ...]:
        return tuple(i for i in self.instances if i.action != "done")


ENDED_BADLY = ("failed", "killed", "blocked", "paused")  # recorded statuses of an instance apply runs again


def _mode(skip: object, dry_run: object, table: str) -> Mode:
    """A table named in skip or dry_run wins over the other's `all` (validate refuses a table named in
    both, and both `all`)."""
    if isinstance(skip, tuple) and table in skip:
        return "skip"
    if isinstance(dry_run, tuple) and table in dry_run:
        return "dry_run"
    return "skip" if skip == "all" else "dry_run" if dry_run == "all" else "run"


def default_name(spec: Backfill, ledger: LedgerView, today: date, project: Project | None = None) -> str:
    """`<first target>_<yyyymmdd>_<seq>`: the first seq free in the ledger and, given the project, not
    used by another backfill's name nor by the default name of an unnamed backfill before it (by key)."""
    if spec.name:
        return spec.name
    if spec.key in ledger.names:
        return ledger.names[spec.key]
    taken = set(ledger.taken_names)
    earlier: list[Backfill] = []
    if project is not None:
        taken |= {b.name for b in project.backfills.values() if b.name}
        earlier = [b for k, b in sorted(project.backfills.items())
                   if k < spec.key and not b.name and k not in ledger.names]
    for other in earlier:
        taken.add(_free_name(other, taken, today))
    return _free_name(spec, taken, today)


def _free_name(spec: Backfill, taken: set[str], today: date) -> str:
    prefix = f"{spec.targets[0].table}_{today.strftime('%Y%m%d')}_"
    seq = 1
    while f"{prefix}{seq}" in taken:
        seq += 1
    return f"{prefix}{seq}"


def _action(inst_id: str, mode: Mode, fp: str, table_fp: str, needed: Iterable[str], ledger: LedgerView,
            partition_key: tuple[str, str]) -> tuple[Action, str]:
    """The instance's action against the ledger alone, and why."""
    if not ledger.partitions and not ledger.instances:  # nothing recorded yet: everything is new
        return ("new", "missing") if mode == "run" else ("new", "skip execution" if mode == "skip" else "dry run")
    record = ledger.instances.get(inst_id)
    if mode != "run":
        wanted = "dry_run" if mode == "dry_run" else "paused"
        return ("done", "") if record == (wanted, fp) else ("new", "skip execution" if mode == "skip" else "dry run")
    stored = ledger.partitions.get(partition_key, {})
    whole = stored.get("*")  # written as an entire table; later field writes override per field

    def recorded(f: str) -> str | None:
        return stored.get(f, whole)

    needed = list(needed)
    if record is not None and record[0] in ENDED_BADLY:  # even over a partition
        return "failed", f"last run {record[0]}"  # written before: what `instances` calls failed, apply runs
    if all(recorded(f) == table_fp for f in needed):
        return "done", ""
    if any(recorded(f) is not None for f in needed):
        return "stale", "SQL changed"
    return "new", "missing"


def _upstream_change(ledger: LedgerView, table: str, ds: str, reads: ReadSet, upstream: Iterable[str],
                     will_run: Mapping[str, bool], needed: Sequence[str]) -> str:
    """Why a partition that is current by its own SQL must still run: its inputs change or changed.

    An upstream instance of this plan runs first, or a partition it read (any date) was written after
    the oldest of the columns it writes (by another backfill, a rerun, set-success)."""
    for up_id in upstream:
        if will_run.get(up_id):
            return f"upstream {up_id.split('/', 1)[1]} runs first"
    columns = ledger.columns_written.get((table, ds))
    mine = oldest_write(columns, needed) if columns else ledger.written.get((table, ds))
    if mine is None:
        return ""
    return rewritten_after(ledger.times, reads, mine)


def _check_partition_cycles(project: Project, drafts: Iterable[PlannedInstance],
                            upstream: Mapping[str, list[str]]) -> None:
    """A table reading its own partitions must not read one that (transitively) reads it."""
    per: dict[str, list[str]] = {}
    for i in drafts:
        if any(t == i.table for t, _ in i.reads):
            per.setdefault(i.table, []).append(i.id)
    for tname, ids in per.items():
        cycle = partition_cycle(ids, upstream)
        if cycle:
            table = project.tables[tname]
            file, line, col = read_location(table, tname)
            shown = " -> ".join(c.rsplit("/", 1)[1] for c in cycle)
            raise SpecErrors([SpecError(
                f"partition cycle in table {tname} (A -> B: A reads B): {shown}; a table may read only "
                "its own other partitions, e.g. `WHERE ds = DATE '{{ ds_add(ds, -1) }}'`",
                file=file, line=line, col=col, table=tname)])


def plan_backfill(
    project: Project, compiler: ProjectCompiler, spec: Backfill, ledger: LedgerView, today: date,
    graph: Mapping[str, tuple[str, ...]] | None = None,
) -> BackfillPlan:
    """Expand one backfill into instances, in execution order. Raises SpecErrors."""
    params = {**project.params, **spec.params}
    name = default_name(spec, ledger, today, project)
    t_minus_1 = datetime.combine(today - timedelta(days=1), datetime.min.time())
    intervals = spec.data_timestamp or (DateInterval(t_minus_1, t_minus_1),)
    if graph is None:
        graph, errs = project_graph(compiler, intervals[0].start, spec.params)
        if errs:
            raise SpecErrors(errs)
    target_names = [t.table for t in spec.targets]
    chosen_fields = {t.table: t.fields for t in spec.targets}
    tables = set(target_names)
    if spec.scope.mode == "downstream":
        tables |= set(downstream_of(target_names, graph, spec.scope.depth, spec.scope.exclude))
    order = topological_order(tables, graph)
    added = [t for t in order if t not in target_names]  # in dependency order, like the plan's tables

    total = sum(count_timestamps(intervals, project.tables[t].hourly) for t in order)
    if total > MAX_INSTANCES:
        raise SpecErrors([SpecError(
            f"backfill {spec.key} would plan {total:,} instances ({len(order)} table(s)); one backfill plans at most "
            f"{MAX_INSTANCES:,}: narrow data_timestamp or split it into several backfills",
            file=spec.spec_file, line=spec.data_timestamp_at[0], col=spec.data_timestamp_at[1],
            key_path=("data_timestamp",))])
    stamps: dict[str, list[datetime]] = {t: expand_timestamps(intervals, project.tables[t].hourly) for t in order}
    days = sorted({ts.date() for ts_list in stamps.values() for ts in ts_list},
                  reverse=spec.order == "descending")
    chunks = split_groups(days, spec.groups)
    where = {d: (g, p) for g, chunk in enumerate(chunks, start=1) for p, d in enumerate(chunk)}

    errors: dict[tuple[object, ...], SpecError] = {}
    drafts: list[PlannedInstance] = []
    # every partition this backfill writes, known before any SQL: upstream across dates in one pass
    index = WriteIndex((f"{name}/{t}/{ds_text(ts, project.tables[t].hourly)}", t,
                        ds_text(ts, project.tables[t].hourly)) for t in order for ts in stamps[t])
    upstream: dict[str, list[str]] = {}
    will_run: dict[str, bool] = {}
    # tables in dependency order, dates ascending: what an instance reads is decided before it
    for tname in order:
        table = project.tables[tname]
        mode = _mode(spec.skip, spec.dry_run, tname)
        fields = chosen_fields.get(tname)
        for ts in stamps[tname]:
            ds = ds_text(ts, table.hourly)
            compiled = compiler.compile(table, ts, params, ds)
            if isinstance(compiled, list):
                for e in compiled:
                    errors.setdefault((e.file, e.line, e.col, e.message.split(" (table")[0]), e)
                continue
            if errors:
                continue  # only collecting errors now
            inst_id = f"{name}/{tname}/{ds}"
            ups = upstream[inst_id] = upstream_ids(inst_id, compiled.read_set, index)
            sql, fp, linked = compiled.sql, compiled.fingerprint, cast(tuple[str, ...], ())
            if fields:
                sql, linked = compiler.field_selection(table, ts, params, fields)
                fp = compiler.fingerprint(table, sql)
            needed = (*fields, *linked) if fields else table.field_names
            group, pos = where[ts.date()]
            action, reason = _action(inst_id, mode, fp, compiled.fingerprint, needed, ledger, (tname, ds))
            if action == "done" and mode == "run":
                reason = _upstream_change(ledger, tname, ds, compiled.read_set, ups, will_run, needed)
                action = "stale" if reason else "done"
            will_run[inst_id] = mode == "run" and action != "done"
            drafts.append(PlannedInstance(
                id=inst_id, table=tname, ds=ds, group=group, position=pos, mode=mode, action=action,
                sql=sql, fingerprint=fp, table_fingerprint=compiled.fingerprint, upstream=tuple(ups),
                fields=fields, linked=linked, reason=reason, reads=compiled.read_set,
            ))
    if errors:
        raise SpecErrors(errors.values())
    _check_partition_cycles(project, drafts, upstream)
    by_day: dict[date, list[PlannedInstance]] = {d: [] for d in days}
    for i in drafts:
        by_day[date.fromisoformat(i.ds[:10])].append(i)
    if spec.order == "descending":  # tables stay in dependency order, hours of a day go descending
        rank = {t: n for n, t in enumerate(order)}
        for day_list in by_day.values():
            day_list.reverse()
            day_list.sort(key=lambda i: rank[i.table])
    runs = table_runs(project, compiler, spec, order)
    instances = tuple(assign_batches([i for chunk in chunks for d in chunk for i in by_day[d]], runs, project,
                                     compiler, params, name))
    retries = spec.retries or project.retries
    return BackfillPlan(
        key=spec.key, name=name, spec_file=spec.spec_file,
        runtime=spec.runtime.isoformat() if spec.runtime else None, order=spec.order,
        group_dates=tuple(tuple(d.isoformat() for d in chunk) for chunk in chunks),
        tables=tuple(order), downstream_added=tuple(added), instances=instances,
        retries=retries.count, retry_delay=retries.delay_seconds, runs=runs,
        notes=order_notes(drafts, upstream, len(chunks)),
    )
