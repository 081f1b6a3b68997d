"""`status`: which partitions are current, stale or missing, per table and data timestamp.

It reads the specs and the ledger, nothing else, and renders no template per date:

- expected partitions of a table: the dates every backfill spec targets for it (targets, and the
  tables `scope: downstream` adds), plus every date the ledger records for it;
- present: recorded in the ledger's `bf_partitions` (a whole-table row `*`, or per-field rows);
- stale: present, but recorded with another template fingerprint (fingerprints.py) than the table's
  spec has now: its template, fields, key, partition, kind, dialect or engine changed since. A
  partition written before ledger schema v2 has no template fingerprint and counts as current.

The graph for `scope: downstream` comes from the declared `depends_on`; a table that declares none
is rendered once (not per date) to find what it reads, and only when a downstream backfill needs it.
Params are not part of the template fingerprint: a params-only change shows in `plan`, not here.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from ..errors import UserError
from ..spec.model import DateInterval, Project, Table
from ..state.fingerprints import template_fingerprint

__all__ = ["STATES", "StatusReport", "TableStatus", "compute_status", "project_status", "table_graph"]

State = Literal["current", "stale", "missing"]
STATES: tuple[State, ...] = ("current", "stale", "missing")


@dataclass(frozen=True)
class TableStatus:
    table: str
    hourly: bool
    dates: Mapping[str, State]  # ds (YYYY-MM-DD, or YYYY-MM-DDTHH for hourly tables) -> state, sorted
    counts: Mapping[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", Counter(self.dates.values()))

    def count(self, state: State) -> int:
        return self.counts.get(state, 0)

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "expected": len(self.dates), "current": self.count("current"),
                "stale": self.count("stale"), "missing": self.count("missing"), "dates": dict(self.dates)}


@dataclass(frozen=True)
class StatusReport:
    project: str
    ledger: str | None  # where the ledger is; None when it does not exist yet
    tables: tuple[TableStatus, ...]
    undeclared: tuple[str, ...] = ()  # tables the ledger records that no spec declares any more
    totals: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"tables": [t.to_json() for t in self.tables], "undeclared_tables": list(self.undeclared)}


def table_graph(project: Project, today: date) -> dict[str, tuple[str, ...]]:
    """table -> the tables it reads: declared `depends_on`, else its template rendered once.

    A template that names no other declared table and has no computed `ref(...)` cannot read one:
    it is not rendered at all (integration tables reading files, typically)."""
    graph = {name: tuple(t.depends_on) for name, t in project.tables.items() if t.depends_on is not None}
    undeclared = sorted(n for n in project.tables if n not in graph)
    if not undeclared:
        return graph
    names = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(project.tables, key=len, reverse=True))
                       + r")\b")
    param_names = {str(v) for v in project.params.values()} & set(project.tables)
    render: list[str] = []
    for name in undeclared:
        source = project.tables[name].template.source
        mentioned = {m.group(1) for m in names.finditer(source)} - {name}
        if mentioned or param_names or _COMPUTED_REF.search(source):
            render.append(name)
        else:
            graph[name] = ()
    if render:
        from ..sql.compiler import ProjectCompiler
        from .planner import ds_text

        compiler = ProjectCompiler(project)
        at = datetime.combine(today - timedelta(days=1), datetime.min.time())
        for name in render:
            table = project.tables[name]
            compiled = None
            if name in compiler.templates:
                compiled = compiler.compile(table, at, dict(project.params), ds_text(at, table.hourly))
            graph[name] = () if compiled is None or isinstance(compiled, list) else tuple(compiled.reads)
    return graph


_COMPUTED_REF = re.compile(r"\bref\s*\(\s*[^'\"\s]")  # ref(some_variable), not ref('a_table')


def _stamps(intervals: tuple[DateInterval, ...], hourly: bool, cache: dict[Any, list[str]]) -> list[str]:
    key = (intervals, hourly)
    if key not in cache:
        from .planner import ds_text, expand_timestamps

        cache[key] = [ds_text(ts, hourly) for ts in expand_timestamps(intervals, hourly)]
    return cache[key]


def expected_by_table(project: Project, today: date) -> dict[str, set[str]]:
    """table -> the data timestamps the backfill specs target for it."""
    from .dag import downstream_of

    out: dict[str, set[str]] = {name: set() for name in project.tables}
    graph: dict[str, tuple[str, ...]] | None = None
    t_minus_1 = datetime.combine(today - timedelta(days=1), datetime.min.time())
    cache: dict[Any, list[str]] = {}
    for spec in project.backfills.values():
        tables = {t.table for t in spec.targets if t.table in project.tables}
        if spec.scope.mode == "downstream":
            if graph is None:
                graph = table_graph(project, today)
            tables |= set(downstream_of(sorted(tables), graph, spec.scope.depth, spec.scope.exclude))
        intervals = spec.data_timestamp or (DateInterval(t_minus_1, t_minus_1),)
        for name in tables:
            if name in project.tables:
                out[name].update(_stamps(intervals, project.tables[name].hourly, cache))
    return out


def _state(recorded: Mapping[str, str | None], table: Table, current: str) -> State:
    """A recorded partition is current when every row that still describes one of its fields carries
    the current template fingerprint (or none: written before schema v2)."""
    own = [f for f in table.field_names if f in recorded]
    rows = [recorded[f] for f in own]
    if "*" in recorded and len(own) < len(table.fields):
        rows.append(recorded["*"])
    if not rows:  # only rows of fields the table no longer declares: its shape changed
        return "stale"
    return "current" if all(fp is None or fp == current for fp in rows) else "stale"


def compute_status(project: Project, groups: Iterable[tuple[str, str, str | None, list[str]]],
                   today: date, table: str | None = None, start: date | None = None,
                   end: date | None = None, stale_reads: Iterable[tuple[str, str]] = ()
                   ) -> tuple[list[TableStatus], list[str]]:
    """Per declared table, the state of each expected partition; and the undeclared tables recorded.

    `groups`: (table, field, template fingerprint, dates) as `Ledger.partition_groups` reads them."""
    expected = expected_by_table(project, today)
    whole: dict[str, dict[str, str | None]] = {name: {} for name in project.tables}  # the usual '*' rows
    by_field: dict[str, dict[str, dict[str, str | None]]] = {}  # partitions with per-field rows
    undeclared: set[str] = set()
    for t, f, tfp, dss in groups:
        found = whole.get(t)
        if found is None:
            undeclared.add(t)
        elif f == "*":
            found.update(dict.fromkeys(dss, tfp))
        else:
            per_ds = by_field.setdefault(t, {})
            for ds in dss:
                per_ds.setdefault(ds, {})[f] = tfp
    by_reads: dict[str, list[str]] = {}
    for t, ds in stale_reads:
        by_reads.setdefault(t, []).append(ds)
    lo = start.isoformat() if start else "0000"
    hi = end.isoformat() + "~" if end else "9999"  # '~' sorts after 'T': an hourly ds of the last day is in
    out: list[TableStatus] = []
    for name in sorted(project.tables):
        if table is not None and name != table:
            continue
        spec = project.tables[name]
        current = template_fingerprint(spec, project)
        plain, fields = whole[name], by_field.get(name, {})
        states: dict[str, State] = dict.fromkeys(expected[name], "missing")
        states.update(dict.fromkeys(plain, "current"))
        states.update(dict.fromkeys([ds for ds, tfp in plain.items() if tfp is not None and tfp != current],
                                    "stale"))
        for ds, recorded in fields.items():
            states[ds] = _state({**({"*": plain[ds]} if ds in plain else {}), **recorded}, spec, current)
        for ds in by_reads.get(name, ()):  # computed from partitions rewritten (or stale) since
            if states.get(ds) == "current":
                states[ds] = "stale"
        dates = {ds: states[ds] for ds in sorted(states) if lo <= ds <= hi}
        out.append(TableStatus(name, spec.hourly, dates))
    return out, sorted(undeclared)


def project_status(root: Path, table: str | None = None, start: date | None = None, end: date | None = None,
                   today: date | None = None) -> StatusReport:
    from ..spec.loader import load_project
    from .freshness import stale_by_ledger
    from .workspace import ledger_url, open_ledger

    project = load_project(root)
    if table is not None and table not in project.tables:
        close = difflib.get_close_matches(table, list(project.tables), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (declared: {', '.join(sorted(project.tables))})"
        raise UserError(f"no table '{table}' in tables/{hint}")
    if start and end and start > end:
        raise UserError(f"--from {start} is after --to {end}")
    ledger = open_ledger(project, create=False)
    stale_reads: list[tuple[str, str]] = []
    where: str | None = None
    rows: list[tuple[str, str, str | None, list[str]]] = []
    if ledger is not None:
        try:
            url, _ = ledger_url(project)
            where = _where(project, url)
            rows = ledger.partition_groups(table)
            stale_reads = list(stale_by_ledger(ledger, project))
        finally:
            ledger.close()
    tables, undeclared = compute_status(project, rows, today or date.today(), table, start, end, stale_reads)
    totals: dict[str, int] = {s: sum(t.count(s) for t in tables) for s in STATES}
    totals["expected"] = sum(len(t.dates) for t in tables)
    return StatusReport(project.name, where, tuple(tables), tuple(undeclared) if table is None else (), totals)


def _where(project: Project, url: str) -> str:
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        try:
            return path.relative_to(project.root.resolve()).as_posix()
        except ValueError:
            return str(path)
    return f"{url.split('://', 1)[0]} ledger"
