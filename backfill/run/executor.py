"""Runs each decided backfill of an apply: in this process's Prefect flow (the embedded default), or
as one flow run per group on a Prefect work pool (workpool.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..plan.planner import BackfillPlan
from ..spec.model import Project
from ..state.ledger import Ledger
from .decide import Decision

if TYPE_CHECKING:
    from .apply import BackfillReport
    from .reporting import Reporter

__all__ = ["Executor"]

BAD = ("failed", "paused", "blocked", "killed")


@dataclass
class Executor:
    """Runs each decided backfill: in this process's Prefect flow, or as group flow runs on a work pool."""
    project: Project
    ledger: Ledger | None
    pool: str | None
    reporter: Reporter | None
    say: Callable[[str], None]
    on_change: Callable[[str, str, str], None] | None
    before_run: Callable[[BackfillPlan], None] | None
    apply_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    launched: list[str] = field(default_factory=list)

    def execute(self, engine: Any, decision: Decision) -> BackfillReport:
        from .apply import BackfillReport, run_instances

        plan, todo = decision.plan, decision.todo
        assert self.ledger is not None
        if not todo:
            return BackfillReport(plan.name)
        if decision.scheduled:
            return BackfillReport(plan.name, counts={"waiting": len(todo)}, scheduled_for=plan.runtime)
        if self.before_run:
            self.before_run(plan)
        ids = [p.id for p in todo]
        if not self.pool:
            return run_instances(self.project, self.ledger, engine, plan.name, ids, plan.retries,
                                 plan.retry_delay, self.on_change, reporter=self.reporter, say=self.say)
        from .workpool import run_on_work_pool

        engine.ensure_tables([self.project.tables[t] for t in sorted({p.table for p in todo})])
        started = time.monotonic()
        counts, notes = run_on_work_pool(self.project, self.ledger, self.pool, plan.name, ids, self.apply_id,
                                         self.on_change, self.say, self.launched)
        report = BackfillReport(plan.name, counts=counts, seconds=time.monotonic() - started)
        final = self.ledger.instances(ids=ids)
        report.rows = sum(r.rows or 0 for r in final)
        why = "; ".join(notes) or "its flow run ended before it"
        report.failures = [(r.id, r.status, r.error or "") for r in final if r.status in BAD] + [
            (r.id, r.status, f"not finished: {why}; apply again to run it") for r in final
            if r.status in ("pending", "waiting", "running")]
        return report
