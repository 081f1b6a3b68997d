"""Run one backfill's instances: groups in parallel, dates in order inside a group, dependencies
inside a date, a project-wide cap on running instances, skip / dry-run / pause / kill / retries.

No Prefect here: the flow (flow.py) calls `run_group` once per group. The shared thread pool of
`max_parallel` workers is the concurrency cap across all groups of this process.

Across processes (work-pool group flows, groupflow.py) hooks take part: `claim` (one conditional
ledger UPDATE before an instance executes; an instance another runner claimed is not run here, its
outcome is read from the ledger), `reserve` (the same for single instances, all at once: the whole
run's before its groups start, a work-pool group's as it starts), `outside` (statuses of upstream
instances of the same apply that run elsewhere: waited for through the ledger) and `observer`
(every status change, for the run's logs).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import takewhile
from typing import Any

from ..spec.model import Table
from ..state.ledger import InstanceRow
from . import gates
from .attempts import execute_instance
from .batchjobs import execute_batch, form_units
from .jobs import BAD, ENDED, GroupProgress, Job, Outcome
from .writer import LedgerWriter

__all__ = ["BAD", "ENDED", "BackfillRun", "GroupProgress", "Outcome"]

class BackfillRun:
    """One execution of a backfill's pending instances."""

    def __init__(self, name: str, rows: Sequence[InstanceRow], tables: Mapping[str, Table], engine: object,
                 writer: LedgerWriter, pool: ThreadPoolExecutor, run_id: str, retries: int = 0,
                 retry_delay: float = 0.0, on_change: Callable[[str, str, str], None] | None = None,
                 max_parallel: int = 1):
        self.name, self.tables, self.engine, self.writer, self.pool = name, tables, engine, writer, pool
        self.run_id, self.retries, self.retry_delay, self.on_change = run_id, retries, retry_delay, on_change
        self.jobs = {r.id: Job(r) for r in rows}
        self.earlier_attempts: Mapping[str, int] = {}  # attempts recorded by earlier runs: numbering goes on
        self.groups: dict[int, list[str]] = {}
        for r in rows:
            self.groups.setdefault(r.group, []).append(r.id)
        self.progress = {g: GroupProgress(total=len(ids)) for g, ids in self.groups.items()}
        # batches (batchjobs.py): the leader's job stands for the unit; members share its cancel token
        self.units = form_units(rows)
        self.leader = {m: lead for lead, ids in self.units.items() for m in ids}
        for lead, ids in self.units.items():
            for m in ids:
                self.jobs[m].token = self.jobs[lead].token
        self._held: set[str] = set()
        self._kill: set[str] = set()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # notified on every status change
        self._todo: dict[int, dict[str, Job]] = {}  # per started group, what has not started or settled
        self._idle: set[int] = set()
        self._released: dict[int, set[str]] = {}  # per group, units let out of its order (gates.release)
        self._bad_at: dict[int, int] = {}  # per group, the first position where something ended badly
        self._inflight: dict[int, int] = {}  # per group, units handed out (to the pool or inline), not ended
        # the cap on running units: held by the pool's workers and by group threads running a unit inline
        self._slots = threading.BoundedSemaphore(max(1, max_parallel))
        self.external: dict[str, str] = {}  # statuses of upstream instances of other backfills
        self.wait_external = False  # False: those ended before this run, or never run in it
        self.stop_reason: str | None = None  # the applying process was told to stop (signals.py)
        self._host = socket.gethostname()
        self.where = f"pid {os.getpid()} on {self._host}"  # said in every attempt's log
        # cross-process hooks (see the module docstring); None: everything runs in this process
        self.claim: Callable[[Sequence[str]], bool] | None = None
        self.reserve: Callable[[Sequence[str]], set[str]] | None = None  # claims ahead, each on its own
        self.outside: Callable[[Sequence[str]], Mapping[str, tuple[str, int | None, str | None]]] | None = None
        self.observer: Callable[[InstanceRow, str, Mapping[str, object]], None] | None = None
        self.upstream_elsewhere = False  # True: upstream of this apply may run in other processes (`outside`)
        # kills and pauses an operator asked for before the run started; later ones come from polling
        self.apply_flags({r.id: (r.held, r.kill_requested) for r in rows if r.held or r.kill_requested})

    # ------------------------------------------------------------------ steering from other terminals
    def apply_flags(self, flags: Mapping[str, tuple[bool, bool]]) -> None:
        """Operator requests read from the ledger: (held, kill_requested) per instance."""
        with self._lock:
            for iid, (held, kill) in flags.items():
                (self._held.add if held else self._held.discard)(iid)
                if kill and iid not in self._kill:
                    self._kill.add(iid)
                    job = self.jobs.get(iid)
                    if job is not None:
                        job.token.cancel()

    def stop(self, reason: str) -> None:
        """End the run now: running SQL is interrupted, and every instance not finished ends `killed`
        with `reason` (instead of `blocked`)."""
        with self._lock:
            self.stop_reason = reason
            ids = list(self.jobs)
        self.apply_flags({i: (i in self._held, True) for i in ids})

    def settle_unstarted(self) -> None:
        """After a stop: instances the flow never dispatched end `killed` with the reason."""
        for job in self.jobs.values():
            if job.status == "waiting":
                self._set(job, "killed", error=self._killed_because("killed before it started"))

    def _killed_because(self, default: str) -> str:
        return self.stop_reason or default

    def active_ids(self) -> list[str]:
        return [i for i, j in self.jobs.items() if j.status in ("waiting", "running")]

    # ------------------------------------------------------------------ status bookkeeping
    def _set(self, job: Job, status: str, record: bool = True, attempt: Mapping[str, object] | None = None,
             **values: object) -> None:
        """`attempt`: an attempt's record, written in the same ledger change (one queue hand-off)."""
        if status == "blocked" and (self.stop_reason or job.row.id in self._kill):  # asked to end: killed
            status, values = "killed", {**values, "error": self._killed_because("killed by an operator")}
        with self._lock:  # group threads and worker threads both change statuses
            previous = job.status
            job.status = status
            p = self.progress[job.row.group]
            if previous == "running":
                p.running -= 1
            if status == "running":
                p.running += 1
            elif status in ("success", "dry_run"):
                p.done += 1
            elif status in BAD:
                p.failed += 1
                g = job.row.group
                self._bad_at[g] = min(self._bad_at.get(g, job.row.position), job.row.position)
            if status != "running":  # the groups wait for ends; a start changes nothing they look at
                self._cond.notify_all()
        now = time.time()
        vals: dict[str, object] = {"status": status, **values}
        if status in ("success", "dry_run", "failed", "paused", "blocked", "killed"):
            vals.setdefault("ended_at", now)
            if self.claim is not None:  # a final status ends the claim, in the same ledger write
                vals.update(claimed_by=None, lease_until=None)
        partitions = None
        if status == "success":
            fields = job.row.fields
            needed = fields if fields else ("*",)
            fps = (job.row.table_fingerprint, job.row.template_fingerprint)
            partitions = [(job.row.table, job.row.ds, f, *fps) for f in needed]
            if fields and self.tables[job.row.table].primary_key:
                linked = [f for f in job.row.linked if f not in fields]
                partitions += [(job.row.table, job.row.ds, f, *fps) for f in linked]
        if record:
            self.writer.put(job.row.id, vals, attempt=attempt, partitions=partitions)
        if self.observer:
            self.observer(job.row, status, vals)
        if self.on_change:
            self.on_change(job.row.id, previous, status)

    # ------------------------------------------------------------------ execution
    def run_group(self, group: int) -> dict[str, int]:
        """Run one group's instances: a date after the previous one of its group has ended, each
        instance (or batch) once every partition it reads that this apply writes is written.

        Reads win over the group's order: when every started group waits and nothing runs, the
        instances whose upstream has ended well are released out of their group's order; an upstream
        that ended badly (or cannot run any more) blocks its readers. Nothing waits forever."""
        jobs = sorted((self.jobs[i] for i in self.groups.get(group, [])), key=lambda j: (j.row.position, j.row.seq))
        # not started or settled, in order; a dict: taking a unit out of the middle is O(1). Members go with leaders
        todo = {j.row.id: j for j in jobs if self.leader.get(j.row.id, j.row.id) == j.row.id}
        self._reserve(list(todo.values()))
        cursor = 0
        with self._cond:
            self._todo[group] = todo
            released = self._released.setdefault(group, set())  # let out of order by gates.release
        while todo:
            ready: list[Job] = []
            with self._cond:
                while cursor < len(jobs) and jobs[cursor].status in ENDED:
                    cursor += 1
                gate = jobs[cursor].row.position if cursor < len(jobs) else -1
                bad_at = self._bad_at.get(group)
                if bad_at is not None:
                    for job in [j for j in todo.values() if j.row.position > bad_at]:
                        for member in self._members(job):
                            self._set(member, "blocked", error="an earlier date of its group failed or was paused")
                        del todo[job.row.id]
                front = list(takewhile(lambda j, gate=gate: j.row.position == gate, todo.values()))  # type: ignore[misc]
                released -= {i for i in released if i not in todo}  # taken since, or blocked
                front += sorted((j for j in (todo[i] for i in released) if j.row.position != gate),
                                key=lambda j: (j.row.position, j.row.seq))
                for job in front:
                    verdict = gates.verdict(self, job)
                    if verdict is None:
                        continue
                    if verdict:
                        for member in self._members(job):
                            self._set(member, "blocked", error=verdict)
                    else:
                        ready.append(job)
                    del todo[job.row.id]
                if not ready and todo:
                    self._idle.add(group)
                    if gates.stuck(self):
                        gates.release(self)
                    else:
                        self._cond.wait(0.5)
                    self._idle.discard(group)
                released -= {i for i in released if i not in todo}
                # the group's only unit, with nothing else of it able to start before it ends: this thread
                # runs it (a hand-off to the pool and back cost more than a small partition's write)
                alone = len(ready) == 1 and not released and not self._inflight.get(group) \
                    and (not todo or next(iter(todo.values())).row.position > ready[0].row.position)
            for job in ready:
                self._dispatch(job, inline=alone)
        with self._cond:
            self._cond.notify_all()  # a group with nothing left to start may leave the others stuck
            while any(j.status not in ENDED for j in jobs):  # the group ends when its instances have
                self._cond.wait(0.5)
        p = self.progress[group]
        return {"total": p.total, "done": p.done, "failed": p.failed}

    def reserve_ahead(self) -> None:
        """Claim every group's single instances at once, before the groups start (not queued group by group)."""
        self._reserve(list(self.jobs.values()))

    def _reserve(self, todo: Sequence[Job]) -> None:
        """Claim single instances in a few ledger writes (what another runner holds: as each starts)."""
        ids = [j.row.id for j in todo if j.row.mode == "run" and j.row.id not in self.leader and not j.reserved]
        if self.reserve is None or self.claim is None or not ids:
            return
        try:
            mine = self.reserve(ids)
        except Exception:  # noqa: BLE001 - each instance is then claimed as it starts
            return
        for i in mine:
            self.jobs[i].reserved = True

    def outside_of(self, ids: Sequence[str]) -> Mapping[str, tuple[str, int | None, str | None]]:
        return self.outside(ids) if self.outside is not None else {}

    def _members(self, job: Job) -> list[Job]:
        """The jobs a unit settles: a batch's members (its leader first), else the job alone."""
        return [self.jobs[m] for m in self.units.get(job.row.id, [job.row.id])]

    def _dispatch(self, job: Job, inline: bool = False) -> None:
        """Start an instance, or settle it at once (skip, dry-run, held, killed)."""
        iid = job.row.id
        members = self.units.get(iid)
        with self._lock:
            killed = any(m in self._kill for m in members or [iid])
            held = any(m in self._held for m in members or [iid])
        if members is not None:
            if killed or held:
                for m in members:
                    why = self._killed_because("killed before it started") if killed else \
                        f"paused by an operator (with its batch {job.row.batch}); `backfill resume` runs it"
                    self._set(self.jobs[m], "killed" if killed else "paused", error=why)
            else:
                self._submit(job, inline, execute_batch, self, self._members(job))
        elif killed:
            self._set(job, "killed", error=self._killed_because("killed before it started"))
        elif job.row.mode == "skip":
            self._set(job, "paused", error="skip execution: not run (Skip Execution)")
        elif held:
            self._set(job, "paused", error="paused by an operator; `backfill resume` runs it")
        elif job.row.mode == "dry_run":
            self._set(job, "dry_run", started_at=time.time())
        else:  # stays `waiting` until a worker of the max_parallel pool takes it
            self._submit(job, inline, execute_instance, self, job)

    def _submit(self, job: Job, inline: bool, fn: Callable[..., Any], *args: Any) -> None:
        """Run a unit on the pool (or here, `inline`) within the cap; its end settles its members and
        wakes the waiting groups."""
        with self._cond:
            g = job.row.group
            self._inflight[g] = self._inflight.get(g, 0) + 1
        if inline:
            self._finish(job, lambda: self._slotted(fn, *args))
        else:
            pooled = self.pool.submit(self._slotted, fn, *args)
            pooled.add_done_callback(lambda f, job=job: self._finish(job, f.result))  # type: ignore[misc]

    def _slotted(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._slots:
            return fn(*args)

    def _finish(self, job: Job, result: Callable[[], Any]) -> None:
        """Settle a unit's members from `result()`: the unit's outcome(s), or the exception it raised."""
        members = self._members(job)
        try:
            got = result()
            outs = got if isinstance(got, dict) else {job.row.id: got}
        except BaseException as exc:  # noqa: BLE001 - an instance never takes the run down
            outs = {m.row.id: Outcome("failed", error=f"{type(exc).__name__}: {exc}") for m in members}
        with self._cond:
            self._inflight[job.row.group] -= 1
            for m in members:
                out = outs[m.row.id]
                self._set(m, out.status, record=not out.adopted, attempt=out.attempt if m is job else None,
                          rows=out.rows, error=out.error, ended_at=out.ended_at)
