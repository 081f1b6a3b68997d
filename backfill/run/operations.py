"""Operations on recorded instances: rerun, set-success, kill, pause, resume (DESIGN: statuses)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import UserError
from ..state.ledger import FINISHED, InstanceRow, Ledger

__all__ = ["rollup", "resolve", "downstream_ids", "Operations"]

BAD = ("failed", "paused", "blocked", "killed")


def rollup(statuses: Iterable[str]) -> str:
    """A backfill's status from its instances' (DESIGN: instance statuses)."""
    found = set(statuses)
    if not found or found <= {"pending"}:
        return "pending"
    if found & {"waiting", "running", "pending"}:
        return "running"
    if found & set(BAD):
        return "failed"
    return "success"


def resolve(ledger: Ledger, target: str) -> tuple[str, list[InstanceRow]]:
    """`BACKFILL/TABLE/DS` or `BACKFILL` -> (backfill name, its instances)."""
    if "/" in target:
        row = ledger.instance(target)
        if row is None:
            raise UserError(f"no instance '{target}'; list them with `backfill instances`")
        return row.backfill, [row]
    rows = ledger.instances(backfill=target)
    if not rows:
        known = ", ".join(b["name"] for b in ledger.backfills()) or "none yet"
        raise UserError(f"no backfill '{target}' in the ledger (known: {known})")
    return target, rows


def downstream_ids(rows: list[InstanceRow], start: Iterable[str]) -> list[str]:
    """`start` plus every instance of the same backfill depending on them, transitively."""
    children: dict[str, list[str]] = {}
    for r in rows:
        for up in r.upstream:
            children.setdefault(up, []).append(r.id)
    seen = list(dict.fromkeys(start))
    i = 0
    while i < len(seen):
        for c in children.get(seen[i], []):
            if c not in seen:
                seen.append(c)
        i += 1
    return seen


class Operations:
    """Steering from any terminal. While an apply runs, requests go through flags it polls."""

    def __init__(self, root: Path, ledger: Ledger, say: Callable[[str], None]):
        self.root, self.ledger, self.say = root, ledger, say

    def apply_running(self) -> bool:
        holder = self.ledger.lock_holder()
        return bool(holder and holder["alive"])

    def set_success(self, target: str) -> list[str]:
        _, rows = resolve(self.ledger, target)
        if len(rows) != 1:
            raise UserError("set-success takes one instance id BACKFILL/TABLE/DS")
        row = rows[0]
        if row.status in ("running", "waiting") and self.apply_running():
            raise UserError(f"{row.id} is {row.status} in a running apply; kill it first")
        fields = (*row.fields, *row.linked) if row.fields else ("*",)
        self.ledger.apply_updates([{
            "id": row.id,
            "values": {"status": "success", "error": "set to success by an operator (not executed)",
                       "ended_at": time.time()},
            "partitions": [(row.table, row.ds, f, row.table_fingerprint, row.template_fingerprint) for f in fields],
        }])
        return [row.id]

    def kill(self, target: str) -> list[str]:
        _, rows = resolve(self.ledger, target)
        active = [r.id for r in rows if r.status not in FINISHED]
        if not active:
            raise UserError(f"nothing to kill: no instance of '{target}' is pending, waiting or running")
        self.ledger.set_flags(active, kill_requested=True)
        if not self.apply_running():
            self.ledger.set_flags(active, status="killed", error="killed by an operator", ended_at=time.time())
        return active

    def pause(self, target: str) -> list[str]:
        _, rows = resolve(self.ledger, target)
        todo = [r.id for r in rows if r.status in ("pending", "waiting")]
        if not todo:
            raise UserError(f"nothing to pause: no instance of '{target}' is pending or waiting")
        self.ledger.set_flags(todo, held=True)
        if not self.apply_running():
            self.ledger.set_flags(todo, status="paused", error="paused by an operator; `backfill resume` runs it")
        return todo

    def to_resume(self, target: str) -> tuple[str, list[str]]:
        """Clear the operator pause; return what must run again: what an operator paused and what that
        blocked (its downstream, the later dates of its group), never what a failure, a kill or a
        skipped instance blocks (`rerun --failed` is for those)."""
        name, rows = resolve(self.ledger, target)
        held = [r.id for r in rows if r.held]
        self.ledger.set_flags(held or [r.id for r in rows], held=False)
        all_rows = self.ledger.instances(backfill=name)
        paused = [r for r in rows if r.status == "paused" and r.mode != "skip"]
        if not paused:
            return name, []
        by_id = {r.id: r for r in all_rows}
        later = [r.id for r in all_rows if r.status == "blocked"
                 and any(r.group == p.group and r.position > p.position for p in paused)]
        chosen = [i for i in downstream_ids(all_rows, [*(p.id for p in paused), *later])
                  if by_id[i].status in ("paused", "blocked")]
        keep = set(chosen)
        changed = True
        while changed:  # an upstream left out that did not succeed still blocks: leave those alone
            changed = False
            for i in list(keep):
                ups = (by_id.get(u) for u in by_id[i].upstream if u not in keep)
                if any(u is not None and u.status not in ("success", "dry_run") for u in ups):
                    keep.discard(i)
                    changed = True
        return name, [i for i in chosen if i in keep]

    def to_rerun(self, target: str, failed_only: bool, instances: list[str], downstream: bool
                 ) -> tuple[str, list[str]]:
        name, rows = resolve(self.ledger, target)
        if instances:
            known = {r.id for r in rows}
            for i in instances:
                if i not in known:
                    raise UserError(f"no instance '{i}' in backfill '{name}'")
            chosen = list(instances)
        elif failed_only:
            chosen = [r.id for r in rows if r.status in BAD]
        else:
            chosen = [r.id for r in rows]
        if downstream:
            chosen = downstream_ids(self.ledger.instances(backfill=name), chosen)
        if not chosen:
            raise UserError(f"nothing to rerun in '{name}'" + (" (no failed instance)" if failed_only else ""))
        return name, chosen
