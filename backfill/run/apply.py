"""`apply`: make the ledger and the warehouse match the committed specs.

Two steps under the apply lock: decide (pure, `decide.py`: what runs, from the plans and a ledger
snapshot) and execute (here: record the decision through `records.ApplyRecords`, run each backfill
as a Prefect flow, summarise). What a dead apply left behind is settled first.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..plan.across import stale_across_backfills
from ..plan.planner import BackfillPlan, LedgerView
from ..plan.readiness import check_readiness
from ..plan.validate import Validated, validate_project
from ..plan.workspace import (
    build_plans,
    ledger_exists,
    open_ledger,
)
from ..spec.model import Project
from ..state.claims import lease_seconds, process_claimant
from ..state.ledger import Ledger
from . import heap, ownreporter, tempserver
from .claiming import attach_claims, ended_flow_runs, prepare_run, tend
from .decide import decide
from .engines import EngineOpening
from .executor import Executor
from .lock import hold_lock
from .records import ApplyRecords
from .reporting import close_reporter, discard_prefect, start_reporter
from .savedplan import check_saved_plan, check_saved_plan_first, saved_plan_keys
from .signals import STOP, Stopped, run_in_thread, stop_on_signals

if TYPE_CHECKING:
    from .reporting import Reporter

__all__ = ["ApplyReport", "BackfillReport", "apply_project", "attach_claims", "hold_lock", "run_again",
           "run_instances"]


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


def run_instances(project: Project, ledger: Ledger, engine: Any, name: str, ids: Sequence[str],
                  retries: int, retry_delay: float, on_change: Callable[[str, str, str], None] | None = None,
                  run_id: str | None = None, reporter: Reporter | None = None,
                  say: Callable[[str], None] | None = None) -> BackfillReport:
    """Execute recorded instances of one backfill (its groups on threads here; Prefect hears of it
    from `reporter`, or from a reporter of its own that this call waits for); wait for the end."""
    from .flow import run_groups
    from .scheduler import BackfillRun
    from .writer import LedgerWriter

    run_id = run_id or uuid.uuid4().hex[:12]
    ApplyRecords(ledger).claim(ids, run_id)
    rows = ledger.instances(ids=list(ids))
    report = BackfillReport(name)
    if not rows:
        return report
    engine.ensure_tables([project.tables[t] for t in sorted({r.table for r in rows})])
    started = time.monotonic()
    runs: list[BackfillRun] = []

    def ledger_failed(_exc: BaseException) -> None:  # the ledger cannot record progress any more: stop
        for r in runs:
            r.stop("killed: the ledger cannot be written")

    writer = LedgerWriter(ledger, on_error=ledger_failed)
    stop = threading.Event()
    claimant, lease = process_claimant(), lease_seconds()
    pool = ThreadPoolExecutor(max_workers=project.max_parallel, thread_name_prefix="instance")
    run = BackfillRun(name, rows, project.tables, engine, writer, pool, run_id, retries, retry_delay, on_change,
                      max_parallel=project.max_parallel)
    runs.append(run)
    attach_claims(run, ledger, claimant, lease)
    prepare_run(run, ledger, rows)
    own_reporter = own_server = None
    if reporter is None:
        own_server = tempserver.for_project(project.root)
        reporter = own_reporter = start_reporter(project.root, own_server, say)

    heap.settle()  # the rows and the run's jobs live until it ends
    tender = tend(run, ledger, claimant, lease, stop)
    STOP.attach(run)
    try:
        # off the main thread: SIGTERM and SIGINT reach signals.py's handlers, which stop the run
        run_in_thread(lambda: run_groups(run, project.name, reporter), stopped=lambda: run.stop_reason is not None)
        if run.stop_reason:
            run.settle_unstarted()  # what a flow that never got going leaves waiting
    finally:
        STOP.detach(run)
        stop.set()
        tender.join()
        pool.shutdown(wait=run.stop_reason is None, cancel_futures=True)
        writer.close()
        if own_reporter is not None:
            close_reporter(own_reporter, say, server=own_server if run.stop_reason is None else None)
    report.seconds = time.monotonic() - started
    for job in run.jobs.values():
        report.counts[job.status] = report.counts.get(job.status, 0) + 1
    final = ledger.outcomes([r.id for r in rows])
    report.rows = sum(n or 0 for _, n, _ in final.values())
    ended = [(r.id, *final[r.id]) for r in rows if r.id in final]  # in the ledger's order
    report.failures = [(i, status, error or "") for i, status, _, error in ended
                       if status in ("failed", "paused", "blocked", "killed")]
    return report


@heap.frozen_heap()
def apply_project(root: Path, selectors: Sequence[str] = (), plan_file: Path | None = None,
                  lock_timeout: float = 0.0, today: date | None = None,
                  say: Callable[[str], None] = print,
                  on_change: Callable[[str, str, str], None] | None = None,
                  before_run: Callable[[BackfillPlan], None] | None = None,
                  work_pool: str | None = None) -> ApplyReport:
    from ..spec.loader import load_project

    # Prefect's side (the temporary server, the reporter) starts first and boots on the other core while
    # we load, validate, lock and plan; a refused first apply stops it and leaves nothing behind
    existed = (root / ".backfill").exists()
    early = not work_pool and (root / "project.yaml").is_file()
    server = tempserver.adopt(root) or (tempserver.for_project(root) if early else None)
    fresh = not existed or (server is not None and server.made_folder) or ownreporter.made_folder(root)
    reporter = start_reporter(root, server, say) if early else None
    try:
        project = load_project(root)
        first: Validated | None = None
        if plan_file is not None:
            check_saved_plan_first(root, plan_file, project, today)
        elif not ledger_exists(project):
            # a first apply of specs that do not validate creates no ledger and no warehouse; against
            # the empty ledger it creates, this is already the plan
            first = validate_project(root, today=today, only=list(selectors) or None)
            check_readiness(first.project, stale_across_backfills(first.plans), LedgerView(), first.graph)
        pool = work_pool or project.work_pool
        if pool:
            from .workpool import check_work_pool_project

            check_work_pool_project(project, pool)
    except BaseException:
        discard_prefect(root, reporter, server, fresh)
        raise
    if pool and early:  # the project runs on a work pool: no reporter here
        discard_prefect(root, reporter, server, fresh)
        reporter = server = None
    if not pool and reporter is None:
        server = server or tempserver.for_project(root)
        reporter = start_reporter(root, server, say)
    executor = Executor(project, ledger=None, pool=pool, reporter=reporter, say=say, on_change=on_change,
                        before_run=before_run)
    try:
        report = _apply_with(project, root, executor, selectors, plan_file, lock_timeout, today, first)
    except BaseException:
        if reporter is not None:  # stopped: Prefect gets a moment to record how, then we go
            close_reporter(reporter, say, timeout=10.0)  # a temporary server stops with us
        raise
    if reporter is not None:  # after the lock: what Prefect still has to record holds no one up
        close_reporter(reporter, say, server=server)
    return report


def _apply_with(project: Project, root: Path, executor: Executor, selectors: Sequence[str],
                plan_file: Path | None, lock_timeout: float, today: date | None,
                first: Validated | None) -> ApplyReport:
    ledger = open_ledger(project)
    executor.ledger = ledger
    say = executor.say
    records = ApplyRecords(ledger)
    report = ApplyReport()
    with stop_on_signals("apply", NEXT_APPLY) as signalled:
        try:
            with hold_lock(ledger, "apply", lock_timeout, say):
                _apply_locked(project, root, ledger, records, report, signalled, selectors, plan_file, today,
                              executor, first)
        finally:
            ledger.close()
    report.nothing_to_do = all(not b.counts and not b.scheduled_for for b in report.backfills)
    return report


NEXT_APPLY = "run `backfill apply` to resume"


def _apply_locked(project: Project, root: Path, ledger: Ledger, records: ApplyRecords, report: ApplyReport,
                  signalled: Any, selectors: Sequence[str], plan_file: Path | None, today: date | None,
                  executor: Executor, first: Validated | None = None) -> None:
    started: list[str] = []  # instances this apply recorded to run now
    # the warehouse opens (10-60 ms) on another thread while recovery looks and the plans are built;
    # it is waited for before the first ledger write: a warehouse that cannot be opened records nothing
    opening = EngineOpening(project)
    try:
        report.recovered = records.recover(opening.engine, ended_flow_runs)
        live = records.live_claims()
        if live:
            raise UserError(f"{len(live)} instance(s) are still executing elsewhere (for example {live[0].id}, "
                            f"claimed by {live[0].claimed_by}); wait for them to end, or `backfill kill` them")
        only = list(selectors) or None
        if plan_file is not None:  # plan what the saved plan covers, to compare like with like
            only = saved_plan_keys(root, plan_file) or None
        result = build_plans(root, only, today=today, ledger=ledger, validated=first, with_state=plan_file is not None)
        engine = opening.engine()
        if plan_file is not None:
            check_saved_plan(root, plan_file, ledger, result)
        records.refresh_done(result.validated.project, result.plans)
        if not selectors and plan_file is None:
            report.deleted_specs = records.forget_deleted_specs(b.key for b in project.backfills.values())
        decisions = decide(result.plans, result.validated.graph, records.pending_ids(), time.time(),
                           result.failed_absent)
        # record every backfill's instances first: a `kill` or `pause` aimed at a backfill that has
        # not started yet in this apply lands on its recorded instances and is honoured when it starts
        for decision in decisions:
            records.record(project, decision)
            if not decision.scheduled:
                started.extend(p.id for p in decision.todo)
        for decision in decisions:
            signalled.check(NEXT_APPLY)
            report.backfills.append(executor.execute(engine, decision))
        signalled.check(NEXT_APPLY)
    except Stopped:  # a signal: what this apply recorded and did not finish ends `killed`, with the reason
        if not executor.pool:  # flow runs on a work pool go on; their claims keep the next apply off them
            records.kill_unfinished(started, signalled.reason or "killed")
        raise
    finally:
        opening.close()


@heap.frozen_heap()
def run_again(root: Path, name: str, ids: Sequence[str], lock_timeout: float = 0.0,
              say: Callable[[str], None] = print,
              on_change: Callable[[str, str, str], None] | None = None,
              announce: Callable[[], None] | None = None, lock_held: bool = False) -> BackfillReport:
    """Reset recorded instances to `pending` and execute them with their recorded SQL (rerun, resume),
    after settling what a dead apply left running. `announce` runs once the lock is held: nothing says
    "rerunning" for a rerun the lock refuses. `lock_held`: the caller holds the lock already."""
    from ..spec.loader import load_project
    from .engines import open_engine

    project = load_project(root)
    ledger = open_ledger(project)
    next_step = f"run `backfill rerun {name} --failed` to run them again"
    with stop_on_signals("rerun", next_step) as signalled:
        try:
            with contextlib.nullcontext() if lock_held else hold_lock(ledger, f"rerun {name}", lock_timeout, say):
                if announce is not None:
                    announce()
                records = ApplyRecords(ledger)
                engine = open_engine(project)
                try:
                    records.recover(lambda: engine, ended_flow_runs)
                    records.reset(ids)
                    records.relink(ids)
                    spec = project.backfill_by_name(name)
                    retries = (spec.retries if spec and spec.retries else project.retries)
                    report = run_instances(project, ledger, engine, name, ids, retries.count,
                                           retries.delay_seconds, on_change)
                    signalled.check(next_step)
                    return report
                except Stopped:
                    records.kill_unfinished(ids, signalled.reason or "killed")
                    raise
                finally:
                    engine.close()
        finally:
            ledger.close()
