"""One instance run by the scheduler: claimed (across processes), its attempts with retries, each a
partition write through the engine; an interrupted or failed call whose write committed after all
(its marker is in the warehouse) is a success, never a second write."""

from __future__ import annotations

import os
import time
import traceback
from typing import TYPE_CHECKING

from ..state.ledger import InstanceRow
from .claiming import adopt
from .engines.base import WriteCancelled, WriteRequest
from .jobs import Job, Outcome, one_line

if TYPE_CHECKING:
    from .scheduler import BackfillRun

__all__ = ["attempt_end", "committed", "execute_instance", "write_fields"]


def execute_instance(run: BackfillRun, job: Job) -> Outcome:
    """Run one instance (a single partition) with its retries; its attempts go to the ledger."""
    row = job.row
    if job.token.cancelled:
        return Outcome("killed", error=run._killed_because("killed before it started"))
    if run.claim is not None and not job.reserved and not run.claim([row.id]):
        adopted = adopt(run, [job])
        if adopted is not None:
            return adopted[row.id]
    table = run.tables[row.table]
    attempts = run.retries + 1
    last_error = ""
    for n in range(1, attempts + 1):
        attempt_id = f"{run.run_id}:{row.id}:{n}"
        started = time.time()
        log = [f"{time.strftime('%Y-%m-%d %H:%M:%S')} attempt {n}/{attempts} of {row.id} ({run.where})"]
        attempt = {"id": attempt_id, "instance_id": row.id, "number": run.earlier_attempts.get(row.id, 0) + n,
                   "pid": os.getpid(),
                   "host": run._host, "started_at": started, "status": "running", "sql": row.sql}
        if n == 1:  # running, with its first attempt: one ledger change
            run._set(job, "running", attempt=attempt, started_at=started, attempts=n)
        else:
            run.writer.put(row.id, {"attempts": n}, attempt=attempt)
        req = WriteRequest(table=table, ds=row.ds, sql=row.sql, fields=write_fields(run, row),
                           instance_id=row.id, attempt_id=attempt_id, fingerprint=row.fingerprint)
        try:
            rows = run.engine.write_partition(req, job.token)  # type: ignore[attr-defined]
        except WriteCancelled:
            landed = committed(run, attempt_id)
            if landed is not None:  # the interrupt came as it committed: the write is there
                return Outcome("success", rows=landed,
                               attempt=attempt_end(attempt, "success", landed, None, log))
            reason = run._killed_because("killed by an operator")
            log.append("killed: the running SQL was interrupted and rolled back"
                       + (f" ({run.stop_reason})" if run.stop_reason else ""))
            return Outcome("killed", error=reason, attempt=attempt_end(attempt, "killed", None, reason, log))
        except Exception as exc:  # noqa: BLE001 - the engine's error is the instance's error
            landed = committed(run, attempt_id)
            if landed is not None:  # the connection was lost after its COMMIT went through
                return Outcome("success", rows=landed, attempt=attempt_end(
                    attempt, "success", landed, None, [*log, f"committed ({exc})"]))
            last_error = one_line(exc)
            log.append(f"failed: {last_error}")
            log.append(traceback.format_exc(limit=3))
            ended = attempt_end(attempt, "failed", None, last_error, log)
            if n < attempts and not job.token.cancelled:
                run.writer.put(row.id, None, attempt=ended)
                time.sleep(run.retry_delay)
                continue
            return Outcome("failed", error=last_error, attempt=ended)
        log.append(f"wrote {rows} row(s) to {row.table} partition {row.ds} in {time.time() - started:.3f}s")
        return Outcome("success", rows=rows, attempt=attempt_end(attempt, "success", rows, None, log))
    return Outcome("failed", error=last_error)  # pragma: no cover


def committed(run: BackfillRun, attempt_id: str) -> int | None:
    """Rows of an attempt whose write committed although the call failed (its marker is there);
    None when it did not commit or the warehouse cannot tell now (a failure stays a failure)."""
    try:
        return run.engine.committed_attempt(attempt_id)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - unknown: the instance fails and runs again next time
        return None


def write_fields(run: BackfillRun, row: InstanceRow) -> tuple[str, ...] | None:
    """The columns a field-level instance writes (its fields and those linked to them), or None: all."""
    if not row.fields:
        return None
    table = run.tables[row.table]
    keep = set(row.fields) | set(row.linked)
    return tuple(f for f in table.field_names if f in keep and f not in table.primary_key)


def attempt_end(attempt: dict[str, object], status: str, rows: int | None, error: str | None,
                log: list[str]) -> dict[str, object]:
    """The attempt's final record: the outcome carries it to the ledger with the instance's status."""
    return {**attempt, "ended_at": time.time(), "status": status, "rows": rows, "error": error,
            "log": "\n".join(log)}
