"""`validate`: every check of every spec, all errors listed. No I/O beyond reading the specs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from ..errors import SpecError, SpecErrors
from ..spec.loader import load_project
from ..spec.model import Project
from ..sql.compiler import ProjectCompiler
from .planner import BackfillPlan, LedgerView, plan_backfill, project_graph

__all__ = ["Validated", "validate_project"]


@dataclass(frozen=True)
class Validated:
    project: Project
    compiler: ProjectCompiler
    graph: dict[str, tuple[str, ...]]
    plans: tuple[BackfillPlan, ...]

    @property
    def instance_count(self) -> int:
        return sum(len(p.instances) for p in self.plans)


def validate_project(root: str | Path, today: date | None = None, ledger: LedgerView | None = None,
                     only: list[str] | None = None) -> Validated:
    """Load, compile and plan every backfill; raise SpecErrors with every problem found."""
    today = today or date.today()
    ledger = ledger or LedgerView()
    project = load_project(root)
    compiler = ProjectCompiler(project)
    errors: list[SpecError] = list(compiler.errors)
    graph, graph_errors = project_graph(compiler, reference_timestamp(project, today), {})
    errors.extend(graph_errors)
    plans: list[BackfillPlan] = []
    if not errors:
        specs = list(project.backfills.values())
        if only:
            unknown = [n for n in only if project.backfill_by_name(n) is None]
            if unknown:
                raise SpecErrors([SpecError(f"no backfill named '{n}' in backfills/; see `backfill plan`")
                                  for n in unknown])
            specs = [b for b in specs if b.key in only or b.name in only]
        for spec in specs:
            try:
                plans.append(plan_backfill(project, compiler, spec, ledger, today, graph))
            except SpecErrors as exc:
                errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    return Validated(project, compiler, graph, tuple(plans))


def reference_timestamp(project: Project, today: date) -> datetime:
    """The data timestamp every template is rendered at once to learn the table graph: the earliest
    one any backfill asks for (so an error names a date the user wrote), else yesterday (T-1)."""
    starts = [iv.start for b in project.backfills.values() for iv in (b.data_timestamp or ())]
    if starts:
        first = min(starts)
        return datetime.combine(first.date(), datetime.min.time())
    return datetime.combine(today - timedelta(days=1), datetime.min.time())
