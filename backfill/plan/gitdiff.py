"""`diff`: plan the specs at two git revisions and compare the plans instance by instance.

The base side (and the head side, when it is a revision too) is read straight from the object
database into a temporary folder: the working tree and the index are never touched.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import SpecError, SpecErrors, UserError
from .gitread import extract, locate, resolve_commit
from .planner import BackfillPlan, LedgerView, PlannedInstance
from .validate import validate_project

__all__ = [
    "WORKTREE", "BackfillDiff", "PlanDiff", "TableDiff", "compact_ranges", "compare_plans", "diff_project",
]

WORKTREE = "WORKTREE"


# --- planning one side ---------------------------------------------------------------------------

def _relabel(errors: Iterable[SpecError], label: str, where: Path | None, prefix: str) -> list[SpecError]:
    """Make each error say which side it is from: base files read as `REV:path/in/repo`."""
    out = []
    for e in errors:
        if e.file is None:
            out.append(dataclasses.replace(e, message=f"[{label}] {e.message}"))
            continue
        file = e.file
        if where is not None:
            with suppress(ValueError):
                file = Path(file).relative_to(where).as_posix()
            file = f"{label}:{prefix}{file}"
        out.append(dataclasses.replace(e, file=file))
    return out


def _plans(root: Path | None, today: date, label: str, where: Path | None, prefix: str
           ) -> tuple[tuple[BackfillPlan, ...], list[SpecError]]:
    if root is None:
        return (), []
    try:
        return validate_project(root, today=today, ledger=LedgerView()).plans, []
    except SpecErrors as exc:
        return (), _relabel(exc.errors, label, where, prefix)


@contextmanager
def _side(top: Path, rev: str, prefix: str, must_exist: bool) -> Iterator[Path | None]:
    commit = resolve_commit(top, rev)
    with tempfile.TemporaryDirectory(prefix="backfill-diff-") as tmp:
        root = extract(top, commit, prefix, Path(tmp))
        if root is None and must_exist:
            raise UserError(f"no project at revision '{rev}': {prefix or './'}project.yaml is not in it")
        yield root


def diff_project(project: Path, base: str, head: str | None = None, today: date | None = None) -> PlanDiff:
    """Plan the project at `base` and at `head` (None: the working tree) and compare. Raises
    UserError for git problems and SpecErrors (labelled by side) for bad specs on either side."""
    today = today or date.today()
    top, prefix = locate(project)
    with _side(top, base, prefix, must_exist=False) as base_root:
        base_plans, errors = _plans(base_root, today, base, base_root, prefix)
        if head is None:
            head_plans, head_errors = _plans(project, today, WORKTREE, None, prefix)
        else:
            with _side(top, head, prefix, must_exist=True) as head_root:
                head_plans, head_errors = _plans(head_root, today, head, head_root, prefix)
    if errors or head_errors:
        raise SpecErrors(errors + head_errors)
    return compare_plans(base_plans, head_plans, base, head or WORKTREE)


# --- comparing two plans -------------------------------------------------------------------------

@dataclass
class TableDiff:
    table: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    reasons: set[str] = field(default_factory=set)  # sql, definition, mode, fields, upstream
    sample: tuple[PlannedInstance, PlannedInstance] | None = None  # one changed (base, head) pair

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "added": self.added, "removed": self.removed, "changed": self.changed}


@dataclass
class BackfillDiff:
    name: str
    status: str  # added | removed | changed | unchanged
    spec_file: str
    base_count: int
    head_count: int
    tables: list[TableDiff]
    settings: dict[str, tuple[Any, Any]]  # setting -> (base, head), for backfills on both sides

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "tables": [t.to_json() for t in self.tables],
                "settings": {k: {"base": b, "head": h} for k, (b, h) in self.settings.items()}}


@dataclass
class PlanDiff:
    base: str
    head: str
    backfills: list[BackfillDiff]

    @property
    def summary(self) -> dict[str, int]:
        tables = [t for b in self.backfills for t in b.tables]
        return {k: sum(len(getattr(t, k)) for t in tables) for k in ("added", "removed", "changed")}

    @property
    def has_differences(self) -> bool:
        return any(b.status != "unchanged" for b in self.backfills)

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "head": self.head, "backfills": [b.to_json() for b in self.backfills],
                "summary": self.summary}


def _settings(p: BackfillPlan) -> dict[str, Any]:
    return {"runtime": p.runtime or "immediately", "order": p.order, "groups": len(p.group_dates),
            "retries": p.retries, "retry_delay": p.retry_delay}


def _reasons(a: PlannedInstance, b: PlannedInstance) -> set[str]:
    out = set()
    if a.fields != b.fields or a.linked != b.linked:
        out.add("fields")
    if a.mode != b.mode:
        out.add("mode")
    if a.fingerprint != b.fingerprint and "fields" not in out:
        out.add("sql" if a.sql != b.sql else "definition")
    return out


def _changed_by_upstream(old: dict[tuple[str, str], PlannedInstance], head: BackfillPlan | None
                         ) -> set[tuple[str, str]]:
    """Instances whose own SQL is the same but that run after an upstream whose data changes: their
    partitions change too (the plan runs them; see planner._upstream_change)."""
    touched: set[str] = set()
    out: set[tuple[str, str]] = set()
    rank = {t: n for n, t in enumerate(head.tables)} if head else {}
    # tables in dependency order, dates ascending: what an instance reads (any date, its own table's
    # earlier dates too) is decided before it
    for i in sorted(head.instances, key=lambda i: (rank.get(i.table, 0), i.ds)) if head else ():
        a = old.get((i.table, i.ds))
        if i.mode != "run":
            continue
        if a is None or _reasons(a, i):
            touched.add(i.id)
        elif any(u in touched for u in i.upstream):
            touched.add(i.id)
            out.add((i.table, i.ds))
    return out


def _compare_one(name: str, base: BackfillPlan | None, head: BackfillPlan | None) -> BackfillDiff:
    old = {(i.table, i.ds): i for i in base.instances} if base else {}
    new = {(i.table, i.ds): i for i in head.instances} if head else {}
    order = list(head.tables if head else ()) + [t for t in (base.tables if base else ()) if t not in
                                                 (head.tables if head else ())]
    tables = {t: TableDiff(t) for t in order}
    by_upstream = _changed_by_upstream(old, head)
    for key in sorted(old.keys() | new.keys()):
        td = tables.setdefault(key[0], TableDiff(key[0]))
        a, b = old.get(key), new.get(key)
        if a is None:
            td.added.append(key[1])
        elif b is None:
            td.removed.append(key[1])
        elif reasons := _reasons(a, b) or ({"upstream"} if key in by_upstream else set()):
            td.changed.append(key[1])
            td.reasons |= reasons
            if td.sample is None or (td.sample[0].sql == td.sample[1].sql and a.sql != b.sql):
                td.sample = (a, b)
    diffs = [t for t in tables.values() if t.added or t.removed or t.changed]
    settings: dict[str, tuple[Any, Any]] = {}
    if base and head:
        sa, sb = _settings(base), _settings(head)
        settings = {k: (sa[k], sb[k]) for k in sa if sa[k] != sb[k]}
    status = ("added" if base is None else "removed" if head is None
              else "changed" if diffs or settings else "unchanged")
    spec = head or base
    assert spec is not None
    return BackfillDiff(name, status, spec.spec_file, len(old), len(new), diffs, settings)


def compare_plans(base: Iterable[BackfillPlan], head: Iterable[BackfillPlan], base_label: str,
                  head_label: str) -> PlanDiff:
    old = {p.name: p for p in base}
    new = {p.name: p for p in head}
    return PlanDiff(base_label, head_label,
                    [_compare_one(n, old.get(n), new.get(n)) for n in sorted(old.keys() | new.keys())])


# --- presentation helpers --------------------------------------------------------------------------

def _parse_ds(ds: str) -> tuple[datetime, timedelta] | None:
    try:
        if "T" in ds:
            return datetime.strptime(ds, "%Y-%m-%dT%H"), timedelta(hours=1)
        return datetime.strptime(ds, "%Y-%m-%d"), timedelta(days=1)
    except ValueError:
        return None


def compact_ranges(dss: Iterable[str]) -> str:
    """Consecutive days (or hours) collapsed: `2026-07-01..2026-07-14, 2026-07-20`."""
    runs: list[list[str]] = []
    prev: tuple[datetime, timedelta] | None = None
    for ds in sorted(set(dss)):
        cur = _parse_ds(ds)
        if runs and prev and cur and cur[1] == prev[1] and cur[0] - prev[0] == cur[1]:
            runs[-1][1] = ds
        else:
            runs.append([ds, ds])
        prev = cur
    return ", ".join(a if a == b else f"{a}..{b}" for a, b in runs)
