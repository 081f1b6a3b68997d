"""When a unit of a run may start: every partition it reads that this apply writes has been written
(`verdict`), and the way out when every started group waits and nothing runs (`stuck`, `release`).
Called by the scheduler with its lock held."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .jobs import BAD, Job

if TYPE_CHECKING:
    from .scheduler import BackfillRun

__all__ = ["release", "stuck", "verdict", "waits_for"]


def verdict(run: BackfillRun, job: Job) -> str | None:
    """'' when every upstream of the unit ended well; None while one may still; else why it is blocked."""
    waiting = False
    for u in waits_for(run, job):
        other = run.jobs.get(u)
        status = other.status if other is not None else run.external.get(u, "success")
        away = other is None and run.upstream_elsewhere and u in (found := run.outside_of([u]))
        if away:  # of this apply, run by another process: its status is in the ledger
            status = found[u][0]
        if status in BAD:
            return f"upstream {u} {status}"
        if status in ("success", "dry_run"):
            continue
        if other is None and not run.wait_external and not away:  # it ran before this backfill or never will
            return f"upstream {u} {status}: it has not run before this backfill"
        waiting = True
    return None if waiting else ""


def stuck(run: BackfillRun) -> bool:
    """Every group that has started waits and nothing runs: only a release makes progress."""
    if len(run._todo) < len(run.groups):  # a group that has not started yet may still run upstream
        return False
    active = {g for g, todo in run._todo.items() if todo}
    if not (bool(active) and active <= run._idle and not any(run._inflight.values())):
        return False
    # waiting for an upstream another process runs is progress elsewhere, not a cycle
    return not (run.upstream_elsewhere and any(
        any(u not in run.jobs for u in waits_for(run, j)) and verdict(run, j) is None
        for todo in run._todo.values() for j in todo.values()))


def release(run: BackfillRun) -> None:
    """Block the units an upstream that ended badly blocks (not at their group's front, so not looked
    at yet), and let out of their group's order those whose upstream ended well; with neither, the
    reads form a cycle: block them all (nothing waits forever)."""
    ready = False
    blocked = False
    for todo in run._todo.values():
        for key, job in list(todo.items()):
            why = verdict(run, job)
            if why == "":
                run._released.setdefault(job.row.group, set()).add(job.row.id)
                ready = True
            elif why:
                for member in run._members(job):
                    run._set(member, "blocked", error=why)
                del todo[key]
                blocked = True
    if not (ready or blocked):  # a cycle of reads (validate refuses them): never wait forever
        for todo in run._todo.values():
            for job in todo.values():
                for member in run._members(job):
                    run._set(member, "blocked", error="its upstream can never run: the reads form a cycle")
            todo.clear()
    run._cond.notify_all()


def waits_for(run: BackfillRun, job: Job) -> list[str]:
    """What a unit waits for: its members' upstream (in this run or another backfill's), outside the unit."""
    members = run.units.get(job.row.id, [job.row.id])
    ups = dict.fromkeys(u for m in members for u in run.jobs[m].row.upstream)
    return [u for u in ups if u not in members]
