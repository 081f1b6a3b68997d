"""What a group shows in Prefect, in-process and on work-pool workers alike.

- its state: Failed, with a message counting the failed, blocked, paused and killed instances,
  as soon as one of them did not succeed (Completed otherwise);
- its logs: every instance's start and end (rows, error) go to the run's logs in Prefect, through
  Prefect's API log handler only (the terminal keeps its progress bar);
- a progress artifact updated as instances finish, next to a table artifact of its instances.
Only called inside a Prefect flow or task run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..state.ledger import InstanceRow
from .reporter_child import artifact_key
from .scheduler import BAD, BackfillRun

__all__ = ["artifact_key", "group_label", "group_message", "observe_group"]

_LOGGER = logging.getLogger("backfill.instances")
_SETUP = threading.Lock()
_BY_RUN: dict[int, dict[int, logging.LoggerAdapter[logging.Logger]]] = {}


def group_label(run: BackfillRun, group: int) -> str:
    rows = [run.jobs[i].row for i in run.groups[group]]
    first, last = min(r.ds for r in rows)[:10], max(r.ds for r in rows)[:10]
    span = first if first == last else f"{first}..{last}"
    return f"{run.name} group {group}: {span} ({len(rows)} instances)"


def group_message(run: BackfillRun, groups: list[int]) -> tuple[bool, str]:
    """(ok, message): counts of what did not succeed, e.g. `3 of 21 instances did not succeed: 1 failed, 2 blocked`."""
    statuses = [run.jobs[i].status for g in groups for i in run.groups.get(g, [])]
    bad = {s: statuses.count(s) for s in BAD if statuses.count(s)}
    if not bad:
        return True, f"{len(statuses)} instance(s) succeeded"
    detail = ", ".join(f"{n} {s}" for s, n in bad.items())
    return False, f"{sum(bad.values())} of {len(statuses)} instance(s) did not succeed: {detail}"


def _run_logger() -> logging.LoggerAdapter[logging.Logger]:
    from prefect.context import get_run_context
    from prefect.logging.handlers import APILogHandler

    with _SETUP:
        if not any(isinstance(h, APILogHandler) for h in _LOGGER.handlers):
            _LOGGER.addHandler(APILogHandler())
            _LOGGER.setLevel(logging.INFO)
            _LOGGER.propagate = False  # to the run's logs in Prefect, not to the terminal
    ctx: Any = get_run_context()
    task_run = getattr(ctx, "task_run", None)
    if task_run is not None:
        return logging.LoggerAdapter(_LOGGER, {"flow_run_id": str(task_run.flow_run_id),
                                               "task_run_id": task_run.id})
    return logging.LoggerAdapter(_LOGGER, {"flow_run_id": str(ctx.flow_run.id)})


def _observer(run: BackfillRun) -> Any:
    loggers = _BY_RUN.setdefault(id(run), {})

    def observe(row: InstanceRow, status: str, values: Mapping[str, object]) -> None:
        logger = loggers.get(row.group)
        if logger is None:
            return
        if status == "running":
            logger.info("%s started (%s)", row.id, run.where)
        elif status in ("success", "dry_run"):
            logger.info("%s %s: %s row(s)", row.id, status, values.get("rows") or 0)
        elif status in BAD:
            logger.error("%s %s: %s", row.id, status, values.get("error") or "")
    return observe


def observe_group(run: BackfillRun, group: int) -> Any:
    """Run one group of `run` inside the current Prefect run; returns its counts or a Failed state."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.states import Failed

    _BY_RUN.setdefault(id(run), {})[group] = _run_logger()
    if run.observer is None:
        run.observer = _observer(run)
    label = group_label(run, group)
    progress_id: Any = None
    shown = 0.0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"group-{group}") as one:
        running = one.submit(run.run_group, group)  # first: the group's instances wait for no API call
        with contextlib.suppress(Exception):  # the ledger is the record; UI artifacts are a courtesy
            progress_id = create_progress_artifact(0.0, key=artifact_key(run.name, "group", group, "progress"),
                                                   description=label)
        while True:
            try:
                counts = running.result(timeout=1.0)
                break
            except FutureTimeout:
                p = run.progress[group]
                now = round(100.0 * (p.done + p.failed) / max(1, p.total), 1)
                if progress_id is not None and now != shown:
                    with contextlib.suppress(Exception):
                        update_progress_artifact(progress_id, now)
                    shown = now
    if progress_id is not None:
        with contextlib.suppress(Exception):
            update_progress_artifact(progress_id, 100.0)
    _publish_table(run, group, label)
    ok, message = group_message(run, [group])
    if not ok:
        return Failed(message=f"{label}: {message}")
    return counts


def _publish_table(run: BackfillRun, group: int, label: str) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [{"instance": j.row.id, "table": j.row.table, "ds": j.row.ds, "status": j.status}
            for j in (run.jobs[i] for i in run.groups[group])]
    with contextlib.suppress(Exception):
        create_table_artifact(rows, key=artifact_key(run.name, "group", group), description=label)


def forget(run: BackfillRun) -> None:
    _BY_RUN.pop(id(run), None)
