"""How a backfill runs in this process (the embedded default; work pools: groupflow.py and
workpool.py): its groups in parallel on threads here, its instances on the scheduler's shared pool.

Prefect hears about the run from the reporter process (reporting.py): one flow run per backfill, a
task run per group named after its dates, e.g. `q3-reload group 2: 2026-07-06..2026-07-10 (12
instances)`, the instances' logs, progress and table artifacts, Failed with counts when an instance
did not succeed. A Prefect task per instance would cost 3-9 ms of orchestration each (a DuckDB
partition insert takes ~0.5 ms), and an in-process flow 1.5 s of imports and a GIL shared with
Prefect's threads: this process never imports Prefect for an embedded run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import tempserver
from .reporter_child import flow_run_link
from .scheduler import BackfillRun

if TYPE_CHECKING:
    from .reporting import Reporter

__all__ = ["flow_run_link", "prepare_prefect", "run_groups", "stop_temporary_server"]


def prepare_prefect() -> None:
    """Environment for our flows: no telemetry, quiet terminal logs (the run's logs still reach Prefect)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def run_groups(run: BackfillRun, project: str = "", reporter: Reporter | None = None) -> dict[int, dict[str, int]]:
    """Execute every group of `run` (each on its own thread) and tell `reporter`; per-group counts."""
    groups = sorted(run.groups)
    if reporter is not None:
        reporter.begin(run, project)
        run.observer = reporter.observer(run)
    run.reserve_ahead()

    def one(group: int) -> dict[str, int]:
        try:
            return run.run_group(group)
        finally:
            if reporter is not None:
                reporter.group_end(run, group)

    try:
        with ThreadPoolExecutor(max_workers=max(1, len(groups)), thread_name_prefix="group") as pool:
            for future in [pool.submit(one, g) for g in groups]:
                future.result()
    finally:
        if reporter is not None:
            reporter.end(run)
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
