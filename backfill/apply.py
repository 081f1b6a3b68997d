"""`apply`: make the ledger and the warehouse match the committed specs.

Under the apply lock: recover what a dead apply left behind, plan against the ledger, record the
instances to run, execute each backfill as a Prefect flow, and summarise.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .errors import UserError
from .fingerprints import refresh_done, template_fingerprint
from .ledger import Ledger
from .model import Project
from .planner import BackfillPlan, PlannedInstance
from .workspace import PlanResult, build_plans, load_plan_file, open_ledger, specs_fingerprint

__all__ = ["ApplyReport", "BackfillReport", "apply_project", "hold_lock", "run_instances"]


@dataclass
class BackfillReport:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    seconds: float = 0.0
    scheduled_for: str | None = None
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (id, status, error)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class ApplyReport:
    backfills: list[BackfillReport] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    deleted_specs: list[str] = field(default_factory=list)
    nothing_to_do: bool = False

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.backfills)


@contextmanager
def hold_lock(ledger: Ledger, purpose: str, timeout: float, say: Callable[[str], None]) -> Iterator[None]:
    """The one-apply-at-a-time lock: wait up to `timeout` seconds, refuse a dead holder's lock."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        holder = ledger.try_lock(purpose)
        if holder is None:
            break
        who = f"pid {holder['pid']} on {holder['host']} ({holder['purpose']})"
        if not holder["alive"]:
            if holder["host"] == socket.gethostname() and ledger.unlock(pid=int(holder["pid"])):
                say(f"note: broke the lock of {who}, which is no longer running; recovering its instances")
                continue
            raise UserError(f"the ledger is locked by {who}, which is not known to be running; "
                            "run `backfill unlock` to break the lock")
        if time.monotonic() >= deadline:
            raise UserError(f"another apply holds the ledger lock: {who}; try again later or "
                            "raise --lock-timeout")
        if not told:
            say(f"waiting for the ledger lock held by {who} ...")
            told = True
        time.sleep(0.2)
    try:
        yield
    finally:
        ledger.unlock(pid=os.getpid())


def _instance_row(p: PlannedInstance, backfill: str, seq: int, run_id: str, template_fp: str) -> dict[str, Any]:
    return {
        "id": p.id, "backfill": backfill, "table_name": p.table, "ds": p.ds, "grp": p.group,
        "position": p.position, "seq": seq, "mode": p.mode,
        "fields": json.dumps(list(p.fields)) if p.fields else None,
        "linked": json.dumps(list(p.linked)) if p.linked else None,
        "upstream": json.dumps(list(p.upstream)), "sql": p.sql, "fingerprint": p.fingerprint,
        "table_fingerprint": p.table_fingerprint, "run_id": run_id, "template_fingerprint": template_fp,
    }


def recover(ledger: Ledger, engine: Any) -> list[str]:
    """Instances a dead apply left `running` or `waiting`: settled from the warehouse's write markers.

    A write that committed is recorded as success (never run twice); anything else goes back to
    `pending` and runs again."""
    recovered: list[str] = []
    now = time.time()
    scheduled = {b["name"] for b in ledger.backfills() if b["runtime"] and
                 datetime.fromisoformat(b["runtime"]).timestamp() > now}
    for row in ledger.instances():
        if row.status not in ("running", "waiting") or row.backfill in scheduled:
            continue
        found = engine.query("SELECT attempt_id, rows FROM _backfill_writes WHERE instance_id = ?", [row.id])
        committed = [r for r in found if row.run_id and str(r[0]).startswith(f"{row.run_id}:")]
        if committed:
            fields = (*row.fields, *row.linked) if row.fields else ("*",)
            ledger.apply_updates([{
                "id": row.id,
                "values": {"status": "success", "rows": int(committed[-1][1] or 0), "ended_at": now,
                           "error": None},
                "partitions": [(row.table, row.ds, f, row.table_fingerprint, row.template_fingerprint)
                               for f in fields],
            }])
        else:
            ledger.apply_updates([{"id": row.id, "values": {
                "status": "pending", "error": "interrupted: the applying process stopped; runs again"}}])
        recovered.append(row.id)
    return recovered



def run_instances(project: Project, ledger: Ledger, engine: Any, name: str, ids: Sequence[str],
                  retries: int, retry_delay: float, on_change: Callable[[str, str, str], None] | None = None,
                  run_id: str | None = None) -> BackfillReport:
    """Execute recorded instances of one backfill through the Prefect flow; wait for the end."""
    from .executor.flow import run_flow
    from .executor.scheduler import BackfillRun
    from .executor.writer import LedgerWriter

    run_id = run_id or uuid.uuid4().hex[:12]
    ledger.set_flags(list(ids), run_id=run_id)
    rows = ledger.instances(ids=list(ids))
    report = BackfillReport(name)
    if not rows:
        return report
    engine.ensure_tables([project.tables[t] for t in sorted({r.table for r in rows})])
    started = time.monotonic()
    writer = LedgerWriter(ledger)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=project.max_parallel, thread_name_prefix="instance") as pool:
        run = BackfillRun(name, rows, project.tables, engine, writer, pool, run_id, retries, retry_delay, on_change)
        run.apply_flags(ledger.flags([r.id for r in rows]))  # kills and pauses requested before it started
        run.earlier_attempts = ledger.attempt_counts([r.id for r in rows])
        run.start()

        def poll() -> None:
            while not stop.wait(0.5):
                active = run.active_ids()
                if active:
                    run.apply_flags(ledger.flags(active))

        poller = threading.Thread(target=poll, name="ledger-poll", daemon=True)
        poller.start()
        try:
            run_flow(run)
        finally:
            stop.set()
            poller.join()
            writer.close()
    report.seconds = time.monotonic() - started
    for job in run.jobs.values():
        report.counts[job.status] = report.counts.get(job.status, 0) + 1
    final = ledger.instances(ids=list(ids))
    report.rows = sum(r.rows or 0 for r in final)
    report.failures = [(r.id, r.status, r.error or "") for r in final
                       if r.status in ("failed", "paused", "blocked", "killed")]
    return report


def _saved_plan_keys(root: Path, plan_file: Path) -> list[str]:
    """The backfills a saved plan covers (refused at once if the specs changed since it was made)."""
    doc = load_plan_file(plan_file)
    if doc.get("specs_fingerprint") != specs_fingerprint(root):
        raise UserError(f"{plan_file}: the specs changed since this plan was made; run `backfill plan --out` again")
    return [str(b["key"]) for b in doc.get("backfills", [])]


def _check_saved_plan(root: Path, plan_file: Path, ledger: Ledger, result: PlanResult) -> list[str]:
    doc = load_plan_file(plan_file)
    if doc.get("specs_fingerprint") != specs_fingerprint(root):
        raise UserError(f"{plan_file}: the specs changed since this plan was made; run `backfill plan --out` again")
    if ledger.plan_applied(str(doc["plan_id"])):  # before the state check: its own apply changed the ledger
        raise UserError(f"{plan_file}: this plan was already applied; a saved plan can be applied once")
    made_on = doc.get("state_fingerprint")
    if made_on == "empty":  # saved before the ledger existed: apply has just created it, empty
        made_on = Ledger.empty_state_fingerprint()
    if made_on != ledger.fingerprint_of_state():
        raise UserError(f"{plan_file}: the ledger changed since this plan was made (another apply ran); "
                        "run `backfill plan --out` again")
    if doc.get("plan_id") != result.plan_id:
        raise UserError(f"{plan_file}: this plan no longer matches what the specs plan to; make a new one")
    if not ledger.consume_plan(str(doc["plan_id"])):
        raise UserError(f"{plan_file}: this plan was already applied; a saved plan can be applied once")
    return [b["name"] for b in doc.get("backfills", [])]


def apply_project(root: Path, selectors: Sequence[str] = (), plan_file: Path | None = None,
                  lock_timeout: float = 0.0, today: date | None = None,
                  say: Callable[[str], None] = print,
                  on_change: Callable[[str, str, str], None] | None = None,
                  before_run: Callable[[BackfillPlan], None] | None = None) -> ApplyReport:
    from .engines import open_engine
    from .specs import load_project

    project = load_project(root)
    ledger = open_ledger(project)
    report = ApplyReport()
    try:
        with hold_lock(ledger, "apply", lock_timeout, say):
            engine = open_engine(project)
            try:
                report.recovered = recover(ledger, engine)
                only = list(selectors) or None
                if plan_file is not None:  # plan what the saved plan covers, to compare like with like
                    only = _saved_plan_keys(root, plan_file) or None
                result = build_plans(root, only, today=today, ledger=ledger)
                if plan_file is not None:
                    _check_saved_plan(root, plan_file, ledger, result)
                refresh_done(result.validated.project, ledger, result.plans)
                if not selectors and plan_file is None:
                    report.deleted_specs = ledger.mark_deleted_specs(b.key for b in project.backfills.values())
                pending = {r.id for r in ledger.instances(status="pending")}
                plans = order_backfills(result.plans, result.validated.graph)
                # record every backfill's instances first: a `kill` or `pause` aimed at a backfill that has
                # not started yet in this apply lands on its recorded instances and is honoured when it starts
                queued = [(plan, _enqueue(project, ledger, plan, pending)) for plan in plans]
                for plan, todo in queued:
                    report.backfills.append(_run_one(project, ledger, engine, plan, todo, on_change, before_run))
            finally:
                engine.close()
    finally:
        ledger.close()
    report.nothing_to_do = all(not b.counts and not b.scheduled_for for b in report.backfills)
    return report


def order_backfills(plans: Sequence[BackfillPlan], graph: Mapping[str, Iterable[str]]) -> list[BackfillPlan]:
    """Backfills in dependency order: one that reads tables another writes runs after it (ties and
    cycles keep the spec-file order)."""
    from .dag import topological_order

    writes = {p.key: set(p.tables) for p in plans}
    reads = {p.key: {up for t in p.tables for up in _upstream_closure(t, graph)} for p in plans}
    edges = {p.key: [q.key for q in plans if q.key != p.key and reads[p.key] & writes[q.key]
                     and not (reads[q.key] & writes[p.key])] for p in plans}
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


def _enqueue(project: Project, ledger: Ledger, plan: BackfillPlan, pending: set[str]) -> list[PlannedInstance]:
    """Record the plan's instances that must run as `pending` (or `waiting` for a future runtime)."""
    todo = [p for p in plan.instances if p.action != "done" or p.id in pending]
    seq = {p.id: n for n, p in enumerate(plan.instances)}
    tfp = {t: template_fingerprint(project.tables[t], project) for t in {p.table for p in todo}}
    ledger.enqueue(plan.name, plan.key, plan.spec_file, plan.runtime,
                   [_instance_row(p, plan.name, seq[p.id], "", tfp[p.table]) for p in todo])
    if todo and _scheduled(plan):
        ledger.set_flags([p.id for p in todo], status="waiting")
    return todo


def _scheduled(plan: BackfillPlan) -> bool:
    return bool(plan.runtime) and datetime.fromisoformat(str(plan.runtime)).timestamp() > time.time()


def _run_one(project: Project, ledger: Ledger, engine: Any, plan: BackfillPlan, todo: list[PlannedInstance],
             on_change: Callable[[str, str, str], None] | None,
             before_run: Callable[[BackfillPlan], None] | None) -> BackfillReport:
    if not todo:
        return BackfillReport(plan.name)
    if _scheduled(plan):
        return BackfillReport(plan.name, counts={"waiting": len(todo)}, scheduled_for=plan.runtime)
    if before_run:
        before_run(plan)
    return run_instances(project, ledger, engine, plan.name, [p.id for p in todo], plan.retries,
                         plan.retry_delay, on_change)


def run_again(root: Path, name: str, ids: Sequence[str], lock_timeout: float = 0.0,
              say: Callable[[str], None] = print,
              on_change: Callable[[str, str, str], None] | None = None) -> BackfillReport:
    """Reset recorded instances to `pending` and execute them with their recorded SQL (rerun, resume)."""
    from .engines import open_engine
    from .specs import load_project

    project = load_project(root)
    ledger = open_ledger(project)
    try:
        with hold_lock(ledger, f"rerun {name}", lock_timeout, say):
            ledger.set_flags(list(ids), status="pending", error=None, rows=None, started_at=None, ended_at=None,
                             held=False, kill_requested=False, attempts=0)
            spec = project.backfill_by_name(name)
            retries = (spec.retries if spec and spec.retries else project.retries)
            engine = open_engine(project)
            try:
                return run_instances(project, ledger, engine, name, ids, retries.count, retries.delay_seconds,
                                     on_change)
            finally:
                engine.close()
    finally:
        ledger.close()
