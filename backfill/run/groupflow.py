"""The group flow a Prefect work-pool worker runs: one group of one backfill, recorded by an apply.

Its parameters are plain JSON (the project folder, the backfill, the group, the apply id and this
run's share of `max_parallel`), so `prefect worker start --pool NAME` runs it from the deployment
`apply` creates (entrypoint `backfill.run.groupflow:backfill_group`). It runs the instances the
apply recorded for that group under that apply id:

- each instance is claimed in the ledger before it executes (state/claims.py): a second flow run
  of the same group, or a rerun, executes nothing twice; it follows the other's outcome instead;
- upstream instances that run in other groups or flow runs are waited for through the ledger;
- claims are renewed while the run lives; a run that dies leaves leases that expire, and the
  worker marks its flow run Crashed, which is what lets the next `apply` recover them;
- the flow run ends Failed, with the counts, when any instance did not succeed.
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.context import get_run_context

__all__ = ["backfill_group"]


@flow(name="backfill-group", persist_result=False, validate_parameters=False, log_prints=False)
def backfill_group(project: str, backfill: str, group: int, apply_id: str, parallel: int = 1) -> Any:
    from ..plan.workspace import open_ledger
    from ..spec.loader import load_project
    from ..state.claims import lease_seconds
    from .claiming import attach_claims, prepare_run, tend
    from .engines import open_engine
    from .observe import observe_group
    from .scheduler import BackfillRun
    from .writer import LedgerWriter

    spec = load_project(Path(project))
    ledger = open_ledger(spec)
    engine = open_engine(spec)
    stop = threading.Event()
    try:
        rows = [r for r in ledger.instances(backfill=backfill) if r.group == group and r.run_id == apply_id]
        if not rows:
            return {"total": 0, "done": 0, "failed": 0}
        chosen = spec.backfill_by_name(backfill)
        retries = chosen.retries if chosen and chosen.retries else spec.retries
        flow_run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
        claimant, lease = f"flow-run:{flow_run_id}", lease_seconds()
        writer = LedgerWriter(ledger)
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="instance") as pool:
            run = BackfillRun(backfill, rows, spec.tables, engine, writer, pool, apply_id, retries.count,
                              retries.delay_seconds, max_parallel=max(1, parallel))
            run.where = (f"pid {os.getpid()}, worker pid {os.getppid()}, flow run {flow_run_id}, "
                         f"on {socket.gethostname()}")
            attach_claims(run, ledger, claimant, lease)
            run.upstream_elsewhere = True  # other groups and backfills of this apply run in other flow runs
            prepare_run(run, ledger, rows)

            tender = tend(run, ledger, claimant, lease, stop)
            try:
                return observe_group(run, group)
            finally:
                stop.set()
                tender.join()
                writer.close()
    finally:
        engine.close()
        ledger.close()
