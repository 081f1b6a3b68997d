"""The Prefect flow that hosts a backfill run: one flow run per backfill, one task run per group.

A Prefect task per instance would cost 7-9 ms of orchestration each (a DuckDB partition insert takes
~0.5 ms), so instances run on our own thread pool inside the group tasks; the ledger records each one.
Against a Prefect server (PREFECT_API_URL) the flow run is named after the backfill and each task run
after its group and dates, e.g. `q3-reload group 2: 2026-07-06..2026-07-10 (12 instances)`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from .scheduler import BackfillRun

__all__ = ["prepare_prefect", "run_flow", "stop_temporary_server"]

# Prefect keeps flow and task objects alive in its registries; they reach the run only through this
# table, emptied when the flow ends, so no engine connection outlives its apply.
_RUNS: dict[str, BackfillRun] = {}


def prepare_prefect() -> None:
    """Environment for our flows: no telemetry, quiet logs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    # the temporary server of a process without PREFECT_API_URL takes 10-30 s to start on a busy
    # 2-core machine; Prefect's own 20 s limit would fail the apply with a traceback
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def run_flow(run: BackfillRun) -> dict[int, dict[str, int]]:
    """Execute every group of `run` as a Prefect flow; returns per-group counts."""
    prepare_prefect()
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import temporary_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    groups = sorted(run.groups)
    key = run.run_id
    _RUNS[key] = run

    @task(name="backfill-group", retries=0, persist_result=False, cache_policy=NO_CACHE)
    def group_task(run_key: str, group: int) -> dict[str, int]:
        counts = _RUNS[run_key].run_group(group)
        _publish_group(_RUNS[run_key], group)
        return counts

    labels = {g: _label(run, g) for g in groups}  # the flow body must not reference `run`
    name = run.name

    runner: Any = ThreadPoolTaskRunner(max_workers=max(1, len(groups)))

    @flow(name="backfill", flow_run_name=name, task_runner=runner, persist_result=False,
          validate_parameters=False, log_prints=False)
    def backfill_flow() -> dict[int, dict[str, int]]:
        futures: dict[int, Any] = {
            g: group_task.with_options(task_run_name=labels[g]).submit(key, g) for g in groups
        }
        return {g: f.result() for g, f in futures.items()}

    try:
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            result: dict[int, dict[str, int]] = backfill_flow()
    finally:
        _RUNS.pop(key, None)
    return result


def _label(run: BackfillRun, group: int) -> str:
    rows = [run.jobs[i].row for i in run.groups[group]]
    first, last = min(r.ds for r in rows)[:10], max(r.ds for r in rows)[:10]
    span = first if first == last else f"{first}..{last}"
    return f"{run.name} group {group}: {span} ({len(rows)} instances)"


def _publish_group(run: BackfillRun, group: int) -> None:
    """One table artifact per group (instance, table, date, status): readable in the Prefect UI."""
    import re

    from prefect.artifacts import create_table_artifact

    rows = [{"instance": j.row.id, "table": j.row.table, "ds": j.row.ds, "status": j.status}
            for j in (run.jobs[i] for i in run.groups[group])]
    key = re.sub(r"[^a-z0-9-]+", "-", f"{run.name}-group-{group}".lower()).strip("-")
    with contextlib.suppress(Exception):  # the ledger is the record; a UI artifact is a courtesy
        create_table_artifact(rows, key=key, description=_label(run, group))


def stop_temporary_server() -> None:
    """Stop the temporary Prefect server this process started, if any (a CLI run about to exit)."""
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return
    for server in list(getattr(server_module.SubprocessASGIServer, "_instances", {}).values()):
        with contextlib.suppress(Exception):  # best effort at exit
            server.stop()
