"""Work-pool execution: one Prefect deployment flow run per group, on `prefect worker start` workers.

`apply` (with `executor: {work_pool: NAME}` or `--work-pool NAME`) creates or updates the project's
deployment of `backfill.run.groupflow:backfill_group` on that pool, submits one flow run per group
(`run_deployment(..., timeout=0)`, idempotency key `apply id:backfill:group`: submitting a group
twice yields the same flow run), then follows them, reading progress from the ledger, until every
flow run has ended. Backfills of one apply run one after another, like in-process.

`max_parallel` is split across the groups of a backfill: each group flow run executes at most
`max(1, max_parallel // groups)` instances at once (groups run their dates one after another), so
the project-wide cap holds whenever `groups <= max_parallel`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from ..errors import UserError
from ..spec.model import Project
from ..state.ledger import Ledger

__all__ = ["DEPLOYMENT_FLOW", "check_work_pool_project", "flow_run_states", "run_on_work_pool"]

DEPLOYMENT_FLOW = "backfill-group"
ENTRYPOINT = "backfill.run.groupflow:backfill_group"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
BAD = ("failed", "paused", "blocked", "killed")


def check_work_pool_project(project: Project, pool: str) -> None:
    """Refuse, with what to change, a project that workers cannot run."""
    problems = []
    if project.state.url_env is None:
        problems.append("a PostgreSQL ledger (state: {url_env: NAME})")
    if project.engine.type != "postgres":
        problems.append("a PostgreSQL warehouse (engine: {type: postgres, url_env: NAME})")
    if problems:
        raise UserError(f"project.yaml: running on work pool '{pool}' needs " + " and ".join(problems)
                        + ": workers in other processes cannot share embedded files")
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError(f"running on work pool '{pool}' needs a Prefect server: set PREFECT_API_URL "
                        "(e.g. http://127.0.0.1:4200/api after `prefect server start`)")


def flow_run_states(ids: Sequence[str]) -> dict[str, str]:
    """flow run id -> its state type (COMPLETED, CRASHED, ...), read from the Prefect server."""
    if not ids or not os.environ.get("PREFECT_API_URL"):
        return {}
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in ids])))
    return {str(r.id): (r.state_type.value if r.state_type else "PENDING") for r in runs}


def _deploy(project: Project, pool: str) -> str:
    """Create or update the project's deployment on `pool`; its name for `run_deployment`."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.callables import parameter_schema

    from .groupflow import backfill_group

    name = f"{project.name}"
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            raise UserError(f"Prefect has no work pool '{pool}': create it with "
                            f"`prefect work-pool create {pool} --type process` and start workers with "
                            f"`prefect worker start --pool {pool}`") from None
        flow_id = client.create_flow_from_name(DEPLOYMENT_FLOW)
        client.create_deployment(
            flow_id=flow_id, name=name, work_pool_name=pool, entrypoint=ENTRYPOINT, path=str(project.root),
            parameter_openapi_schema=parameter_schema(backfill_group).model_dump_for_openapi(),
            tags=[f"project:{project.name}"], enforce_parameter_schema=False,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(project.root)}}],
            # heartbeats let Prefect's zombie automation mark a run whose worker died as Crashed
            job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}},
        )
    return f"{DEPLOYMENT_FLOW}/{name}"


def run_on_work_pool(project: Project, ledger: Ledger, pool: str, name: str, ids: Sequence[str], apply_id: str,
                     on_change: Callable[[str, str, str], None] | None, say: Callable[[str], None],
                     launched: list[str]) -> tuple[dict[str, int], list[str]]:
    """Submit one flow run per group of these recorded instances and follow them to their end.

    Returns the instances' final status counts and the notes on flow runs that crashed or were
    cancelled. `launched` receives every flow run id as soon as it exists (the apply lock keeps them)."""
    from prefect.deployments import run_deployment

    from .flow import flow_run_link, prepare_prefect

    prepare_prefect()
    deployment = _deploy(project, pool)
    ledger.set_flags(list(ids), run_id=apply_id)
    rows = ledger.instances(ids=list(ids))
    groups = sorted({r.group for r in rows})
    parallel = max(1, project.max_parallel // max(1, len(groups)))
    runs: dict[int, str] = {}
    for g in groups:
        mine = [r for r in rows if r.group == g]
        first, last = min(r.ds for r in mine)[:10], max(r.ds for r in mine)[:10]
        flow_run: Any = run_deployment(
            deployment, parameters={"project": str(project.root), "backfill": name, "group": g,
                                    "apply_id": apply_id, "parallel": parallel},
            timeout=0, as_subflow=False, idempotency_key=f"{apply_id}:{name}:{g}",
            flow_run_name=f"{name} group {g}: {first}..{last} ({len(mine)} instances)",
            tags=[f"project:{project.name}", f"backfill:{name}"])
        runs[g] = str(flow_run.id)
        launched.append(runs[g])
        ledger.set_lock_flow_runs(json.dumps(launched))
        link = flow_run_link(flow_run.id)
        say(f"note: {name} group {g}: flow run {flow_run.id} ({flow_run.name}) on work pool {pool}"
            + (f": {link}" if link else ""))
    return _follow(ledger, ids, runs, pool, on_change, say)


def _follow(ledger: Ledger, ids: Sequence[str], runs: dict[int, str], pool: str,
            on_change: Callable[[str, str, str], None] | None, say: Callable[[str], None]
            ) -> tuple[dict[str, int], list[str]]:
    seen = {i: "pending" for i in ids}
    started = time.monotonic()
    told = False
    while True:
        states = flow_run_states(list(runs.values()))
        for iid, (status, _rows, _error) in ledger.statuses(list(ids)).items():
            if status != seen[iid]:
                if on_change:
                    on_change(iid, seen[iid], status)
                seen[iid] = status
        if all(states.get(r) in FINAL for r in runs.values()):
            break
        if not told and time.monotonic() - started > 15 and all(
                states.get(r) in ("SCHEDULED", "PENDING", None) for r in runs.values()):
            say(f"waiting for a worker of work pool '{pool}' (start one: prefect worker start --pool {pool})")
            told = True
        time.sleep(0.5)
    notes = [f"group {g}: its flow run {r} ended {states[r].lower()}" for g, r in sorted(runs.items())
             if states.get(r) in ("CRASHED", "CANCELLED")]
    final = ledger.statuses(list(ids))
    counts: dict[str, int] = {}
    for status, _rows, _error in final.values():
        counts[status] = counts.get(status, 0) + 1
    return counts, notes
