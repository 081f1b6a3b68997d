"""A batch as one job of the scheduler: its member instances start, fail or succeed together.

The plan put consecutive partitions of a table into a batch (plan/batches.py); the ledger keeps one
row per partition. Here the rows of one run become *units*: a batch whose members are all in the
run (two or more), or one instance. A unit launches at the position of its first member, waits for
every instance its members wait for outside the unit, and writes through `Engine.write_batch`: one
statement, one transaction, one marker per member. An instance of a range template alone is a
unit of one written the same way (its SQL selects the partition column).
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..state.ledger import InstanceRow
from .attempts import attempt_end
from .claiming import adopt
from .engines.base import WriteCancelled
from .engines.batch import BatchMember, BatchRequest
from .jobs import Job, Outcome, one_line

if TYPE_CHECKING:
    from .scheduler import BackfillRun

__all__ = ["execute_batch", "form_units"]


def form_units(rows: Sequence[InstanceRow]) -> dict[str, list[str]]:
    """Leader id -> member ids (in execution order) of every unit written as a batch: batches with at
    least two members in this run that can start where they launch, and range instances alone."""
    by_batch: dict[str, list[InstanceRow]] = {}
    for r in rows:
        if r.batch and r.mode == "run" and not r.fields:
            by_batch.setdefault(r.batch, []).append(r)
    batches = {k: sorted(m, key=lambda r: (r.group, r.position, r.seq)) for k, m in by_batch.items() if len(m) > 1}
    batches = {k: m for k, m in batches.items() if len({(r.group, r.table) for r in m}) == 1}
    while True:  # a batch that would wait for something launching after it runs as single instances
        broken = _unstartable(rows, batches)
        if not broken:
            break
        for k in broken:
            del batches[k]
    units = {m[0].id: [r.id for r in m] for m in batches.values()}
    in_batch = {i for ids in units.values() for i in ids}
    for r in rows:
        if r.ranged and r.id not in in_batch and r.mode == "run":
            units[r.id] = [r.id]
    return units


def _unstartable(rows: Sequence[InstanceRow], batches: Mapping[str, list[InstanceRow]]) -> list[str]:
    launch = {r.id: r.position for r in rows}
    member_of: dict[str, str] = {}
    for k, members in batches.items():
        for r in members:
            launch[r.id] = members[0].position
            member_of[r.id] = k
    group = {r.id: r.group for r in rows}
    broken = []
    for k, members in batches.items():
        start = members[0].position
        for r in members:
            if any(member_of.get(u) != k and group.get(u) == r.group and launch[u] > start
                   for u in r.upstream if u in launch) or any(member_of.get(u) == k for u in r.upstream):
                broken.append(k)  # (a member reading another member, like a cumulative total: one by one)
                break
    return broken


def execute_batch(run: BackfillRun, jobs: Sequence[Job]) -> dict[str, Outcome]:
    """Write every member of a unit in one transaction, with retries; one outcome per member."""

    lead = jobs[0]
    rows = [j.row for j in jobs]
    if lead.token.cancelled:
        return {r.id: Outcome("killed", error=run._killed_because("killed before it started")) for r in rows}
    if run.claim is not None and not run.claim([r.id for r in rows]):  # claimed all together, or followed
        adopted = adopt(run, jobs)
        if adopted is not None:
            return adopted
    began = time.time()  # one span for the whole unit
    for j in jobs:
        run._set(j, "running", started_at=began)
    table = run.tables[rows[0].table]
    attempts = run.retries + 1
    span = rows[0].ds if len(rows) == 1 else f"{rows[0].ds}..{rows[-1].ds}"
    what = f"batch {rows[0].batch} ({len(rows)} partitions, one statement)" if len(rows) > 1 else \
        f"{rows[0].id} (range template)"
    last_error = ""
    for n in range(1, attempts + 1):
        started = time.time()
        header = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} attempt {n}/{attempts} of {what} "
                  f"({run.where})")
        records = {}
        for r in rows:
            sql = r.batch_sql if (len(rows) > 1 and r.batch_sql) else r.sql
            records[r.id] = {"id": f"{run.run_id}:{r.id}:{n}", "instance_id": r.id,
                             "number": run.earlier_attempts.get(r.id, 0) + n, "pid": os.getpid(),
                             "host": run._host, "started_at": started, "status": "running", "sql": sql}
            run.writer.put(r.id, {"attempts": n}, attempt=records[r.id])
        req = BatchRequest(table, tuple(BatchMember(r.ds, r.id, str(records[r.id]["id"]), r.fingerprint, r.sql)
                                        for r in rows),
                           range_sql=rows[0].batch_sql if len(rows) > 1 else None, ranged=rows[0].ranged)
        try:
            counts = run.engine.write_batch(req, lead.token)  # type: ignore[attr-defined]
        except WriteCancelled:
            reason = run._killed_because("killed by an operator")  # or the signal that stopped the apply
            for r in rows:
                _end(run, records[r.id], "killed", None, reason,
                     [header, "killed: the running SQL was interrupted and rolled back"])
            return _same_end({r.id: Outcome("killed", error=reason) for r in rows})
        except Exception as exc:  # noqa: BLE001 - the engine's error is every member's error
            last_error = one_line(exc)
            for r in rows:
                _end(run, records[r.id], "failed", None, last_error,
                     [header, f"failed: {last_error}", traceback.format_exc(limit=3)])
            if n < attempts and not lead.token.cancelled:
                time.sleep(run.retry_delay)
                continue
            return _same_end({r.id: Outcome("failed", error=last_error) for r in rows})
        took = time.time() - started
        for r in rows:
            _end(run, records[r.id], "success", counts.get(r.ds, 0), None,
                 [header, f"wrote {counts.get(r.ds, 0)} row(s) to {r.table} partition {r.ds} "
                  f"({table.name} {span} in {took:.3f}s)"])
        return _same_end({r.id: Outcome("success", rows=counts.get(r.ds, 0)) for r in rows})
    return {r.id: Outcome("failed", error=last_error) for r in rows}  # pragma: no cover


def _same_end(outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
    ended = time.time()
    for out in outcomes.values():
        out.ended_at = ended
    return outcomes


def _end(run: BackfillRun, attempt: dict[str, Any], status: str, rows: int | None, error: str | None,
         log: list[str]) -> None:
    run.writer.put(str(attempt["instance_id"]), None, attempt=attempt_end(attempt, status, rows, error, log))
