"""The Prefect flow that hosts a backfill run in this process: one flow run per backfill, one task run
per group (the embedded default; work pools: groupflow.py and workpool.py).

A Prefect task per instance would cost 3-9 ms of orchestration each (a DuckDB partition insert takes
~0.5 ms), so instances run on our own thread pool inside the group tasks; the ledger records each one.
The flow run is named after the backfill and tagged `project:NAME` and `backfill:NAME`; each task run
is named after its group and dates, e.g. `q3-reload group 2: 2026-07-06..2026-07-10 (12 instances)`.
A group with an instance that did not succeed ends Failed, and so does the flow run (observe.py).

Without PREFECT_API_URL the flow talks to this process's temporary server (tempserver.py), which is
started early by `apply` and pointed at here only while the flow runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from . import tempserver
from .scheduler import BackfillRun

__all__ = ["flow_run_link", "prefect_api", "prepare_prefect", "run_flow", "stop_temporary_server"]

# Prefect keeps flow and task objects alive in its registries; they reach the run only through this
# table, emptied when the flow ends, so no engine connection outlives its apply.
_RUNS: dict[str, BackfillRun] = {}


def prepare_prefect() -> None:
    """Environment for our flows: no telemetry, quiet terminal logs (the run's logs still reach Prefect)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _refresh_prefect_settings() -> None:
    module = sys.modules.get("prefect.context")
    if module is not None:
        module.refresh_global_settings_context()


@contextlib.contextmanager
def prefect_api(server: tempserver.TemporaryServer | None) -> Iterator[None]:
    """Prefect talks to `server` (the temporary one) inside this block; to PREFECT_API_URL without one."""
    if server is None:
        yield
        return
    url = server.url()
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    _refresh_prefect_settings()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        _refresh_prefect_settings()


def flow_run_link(flow_run_id: object) -> str | None:
    """The Prefect UI page of a flow run, when a standing server (PREFECT_API_URL) serves a UI."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def run_flow(run: BackfillRun, project: str = "", server: tempserver.TemporaryServer | None = None,
             say: Callable[[str], None] | None = None) -> dict[int, dict[str, int]]:
    """Execute every group of `run` as a Prefect flow; returns per-group counts."""
    prepare_prefect()
    standing = server is None and bool(os.environ.get("PREFECT_API_URL"))
    # imported while the temporary server may still be booting (its settings are refreshed below)
    from prefect import flow, tags, task
    from prefect.cache_policies import NO_CACHE
    from prefect.context import get_run_context
    from prefect.settings import temporary_settings
    from prefect.states import Completed, Failed
    from prefect.task_runners import ThreadPoolTaskRunner

    from .observe import forget, group_label, group_message, observe_group

    with prefect_api(server):
        groups = sorted(run.groups)
        key = run.run_id
        _RUNS[key] = run

        @task(name="backfill-group", retries=0, persist_result=False, cache_policy=NO_CACHE)
        def group_task(run_key: str, group: int) -> Any:
            return observe_group(_RUNS[run_key], group)

        labels = {g: group_label(run, g) for g in groups}  # the flow body must not reference `run`
        backfill_name = run.name
        runner: Any = ThreadPoolTaskRunner(max_workers=max(1, len(groups)))

        @flow(name="backfill", flow_run_name=run.name, task_runner=runner, persist_result=False,
              validate_parameters=False, log_prints=False)
        def backfill_flow() -> Any:
            if standing and say is not None:
                link = flow_run_link(get_run_context().flow_run.id)  # type: ignore[union-attr]
                if link:
                    say(f"note: Prefect flow run of {backfill_name}: {link}")
            futures = {g: group_task.with_options(task_run_name=labels[g]).submit(key, g) for g in groups}
            for f in futures.values():
                f.wait()
            ok, message = group_message(_RUNS[key], groups)
            return Completed(message=message) if ok else Failed(message=message)

        try:
            with tags(f"project:{project}", f"backfill:{run.name}"), \
                    temporary_settings(updates={"flows.heartbeat_frequency": None}):
                backfill_flow(return_state=True)
        finally:
            _RUNS.pop(key, None)
            forget(run)
    return {g: {"total": p.total, "done": p.done, "failed": p.failed} for g, p in run.progress.items()}


def stop_temporary_server() -> None:
    """Stop the temporary Prefect server(s) this process started, if any (a CLI run about to exit)."""
    tempserver.stop_all()
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return
    for server in list(getattr(server_module.SubprocessASGIServer, "_instances", {}).values()):
        with contextlib.suppress(Exception):  # best effort at exit
            server.stop()
