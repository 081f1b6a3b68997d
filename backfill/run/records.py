"""The ledger writes an apply makes, behind one small interface the executor uses.

`ApplyRecords` wraps a `Ledger`: settle what a dead apply left behind, refresh the template
fingerprints of partitions found done, forget deleted specs, record a decision's instances, and
hand instances to a run. Everything an apply writes to the ledger goes through here (the scheduler's
per-instance progress goes through `writer.LedgerWriter`).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from ..plan.lineage import upstream_among
from ..plan.planner import BackfillPlan, PlannedInstance
from ..spec.model import Project
from ..sql.readsets import read_set_json
from ..state.fingerprints import template_fingerprint
from ..state.ledger import InstanceRow, Ledger
from ..state.lock import pid_alive
from .decide import Decision

__all__ = ["ApplyRecords"]


class ApplyRecords:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def recover(self, engine: Callable[[], Any],
                ended_runs: Callable[[Sequence[str]], set[str]] | None = None) -> list[str]:
        """Instances a dead apply left `running` or `waiting`: settled from the warehouse's write markers.

        Only instances whose runner is gone: unclaimed ones, claims of a dead process on this host, of a
        flow run that ended crashed or cancelled (`ended_runs`: those of the given flow run ids), or whose
        lease expired. A write that committed is recorded as success (never run twice); anything else
        goes back to `pending` and runs again. The claims of live runners are left alone: an apply
        refuses to run while they hold instances (`live_claims`). `engine()`: the warehouse, asked for
        only when there is something to settle (it may still be opening)."""
        ledger = self.ledger
        recovered: list[str] = []
        now = time.time()
        scheduled = {b["name"] for b in ledger.backfills() if b["runtime"] and
                     datetime.fromisoformat(b["runtime"]).timestamp() > now}
        candidates = [r for r in ledger.instances(status=("running", "waiting")) if r.backfill not in scheduled]
        flow_runs = sorted({r.claimed_by.split(":", 1)[1] for r in candidates
                            if r.claimed_by and r.claimed_by.startswith("flow-run:")
                            and (r.lease_until or 0) >= now})
        ended = ended_runs(flow_runs) if ended_runs and flow_runs else set()
        for row in candidates:
            if not _runner_gone(row, now, ended):
                continue
            committed = sorted(engine().committed_attempts(f"{row.run_id}:{row.id}:")) if row.run_id else []
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
        ledger.release(recovered)
        return recovered

    def live_claims(self) -> list[InstanceRow]:
        """Instances claimed by a runner that is still alive (after `recover`)."""
        return [r for r in self.ledger.instances(status=("running", "waiting")) if r.claimed_by]

    def refresh_done(self, project: Project, plans: Iterable[BackfillPlan]) -> int:
        """Record the current template fingerprint on partitions a plan finds done (SQL unchanged).

        A template edit that leaves some dates' SQL as it was (a `{% if ds == ... %}` branch, a change of
        a field type the SQL does not show) changes the template fingerprint of every date; `apply` finds
        those dates done and runs nothing, and this keeps `status` from calling them stale forever."""
        current = {name: template_fingerprint(t, project) for name, t in project.tables.items()}
        recorded: dict[tuple[str, str], set[str | None]] = {}
        for table, ds, _field, tfp in self.ledger.partition_states():
            recorded.setdefault((table, ds), set()).add(tfp)
        todo: dict[tuple[str, str, str], str] = {}
        for plan in plans:
            for i in plan.instances:
                if i.action != "done" or i.mode != "run" or i.table not in current:
                    continue
                if recorded.get((i.table, i.ds), {current[i.table]}) - {current[i.table]}:
                    todo[(i.table, i.ds, i.table_fingerprint)] = current[i.table]
        self.ledger.refresh_template_fingerprints([(*k, v) for k, v in sorted(todo.items())])
        return len(todo)

    def forget_deleted_specs(self, present_keys: Iterable[str]) -> list[str]:
        return self.ledger.mark_deleted_specs(present_keys)

    def pending_ids(self) -> set[str]:
        return {r.id for r in self.ledger.instances(status="pending")}

    def record(self, project: Project, decision: Decision) -> None:
        """Record the decision's instances as `pending` (or `waiting` for a future runtime)."""
        plan, todo = decision.plan, decision.todo
        seq = {p.id: n for n, p in enumerate(plan.instances)}
        tfp = {t: template_fingerprint(project.tables[t], project) for t in {p.table for p in todo}}
        self.ledger.enqueue(plan.name, plan.key, plan.spec_file, plan.runtime,
                            [_instance_row(p, plan.name, seq[p.id], tfp[p.table]) for p in todo])
        if todo and decision.scheduled:
            self.ledger.set_flags([p.id for p in todo], status="waiting")

    def reset(self, ids: Sequence[str]) -> None:
        """Make recorded instances runnable again (rerun, resume)."""
        self.ledger.set_flags(list(ids), status="pending", error=None, rows=None, started_at=None, ended_at=None,
                              held=False, kill_requested=False, attempts=0, claimed_by=None, lease_until=None)

    def relink(self, ids: Sequence[str]) -> None:
        """Before a rerun: each instance also waits for the instances of the rerun that write what it
        read (its recorded upstream names only the instances of the apply that recorded it)."""
        rows = self.ledger.instances(ids=list(ids))
        found = upstream_among(rows)
        self.ledger.apply_updates([{"id": r.id, "values": {"upstream": json.dumps(sorted({*r.upstream, *found[r.id]}))}}
                                   for r in rows if not set(found[r.id]) <= set(r.upstream)])

    def kill_unfinished(self, ids: Sequence[str], reason: str) -> list[str]:
        """Instances among `ids` still `pending` or `waiting` end `killed` with `reason` (the command was
        stopped by a signal before they ran). `running` ones are left to `recover`, which reads the
        warehouse's write markers."""
        todo = [r.id for r in self.ledger.instances(ids=list(ids)) if r.status in ("pending", "waiting")]
        self.ledger.set_flags(todo, status="killed", error=reason, ended_at=time.time())
        return todo

    def claim(self, ids: Sequence[str], run_id: str) -> None:
        """Mark instances as this run's: its write markers start with `run_id`."""
        self.ledger.set_flags(list(ids), run_id=run_id)


def _runner_gone(row: InstanceRow, now: float, ended_flow_runs: set[str]) -> bool:
    claimant = row.claimed_by
    if not claimant:
        return True
    if (row.lease_until or 0) < now:
        return True
    kind, _, rest = claimant.partition(":")
    if kind == "flow-run":
        return rest in ended_flow_runs
    if kind == "proc":
        host, _, pid = rest.rpartition(":")
        return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))
    return False


def _instance_row(p: PlannedInstance, backfill: str, seq: int, template_fp: str) -> dict[str, Any]:
    return {
        "id": p.id, "backfill": backfill, "table_name": p.table, "ds": p.ds, "grp": p.group,
        "position": p.position, "seq": seq, "mode": p.mode,
        "fields": json.dumps(list(p.fields)) if p.fields else None,
        "linked": json.dumps(list(p.linked)) if p.linked else None,
        "upstream": json.dumps(list(p.upstream)), "sql": p.sql, "fingerprint": p.fingerprint,
        "table_fingerprint": p.table_fingerprint, "run_id": "", "template_fingerprint": template_fp,
        "batch": p.batch, "batch_sql": p.batch_sql, "ranged": p.ranged,
        "reads": json.dumps(read_set_json(p.reads), separators=(",", ":")),
    }
