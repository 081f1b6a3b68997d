"""Operations on recorded instances: rerun, set-success, kill, pause, resume (DESIGN: statuses)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..errors import UserError
from ..plan.lineage import upstream_among
from ..state.ledger import FINISHED, InstanceRow, Ledger

__all__ = ["rollup", "resolve", "empty_backfill", "downstream_ids", "released", "nothing_to_resume",
           "scheduled_for", "Operations"]

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
        empty = empty_backfill(ledger, target)
        if empty:
            raise UserError(empty)
        known = ", ".join(b["name"] for b in ledger.backfills()) or "none yet"
        raise UserError(f"no backfill '{target}' in the ledger (known: {known})")
    return target, rows


def empty_backfill(ledger: Ledger, name: str) -> str | None:
    """Why a backfill the ledger records has no instance, in one line; None if it is not recorded."""
    if name not in {b["name"] for b in ledger.backfills()}:
        return None
    return (f"backfill '{name}' has no instances in the ledger: every partition it covers was already "
            "current when it was applied, so it ran nothing")


def scheduled_for(ledger: Ledger, name: str, now: float | None = None) -> str | None:
    """The backfill's recorded runtime while it is still ahead (it waits for it), else None."""
    from datetime import datetime

    runtime = next((b["runtime"] for b in ledger.backfills() if b["name"] == name), None)
    if not runtime or datetime.fromisoformat(str(runtime)).timestamp() <= (time.time() if now is None else now):
        return None
    return str(runtime)


def downstream_ids(rows: list[InstanceRow], start: Iterable[str]) -> list[str]:
    """`start` plus every instance of the same backfill depending on them, transitively: by recorded
    upstream and by recorded read sets (a reader recorded by a later apply names no upstream of it)."""
    children: dict[str, list[str]] = {}
    for iid, ups in upstream_among(rows).items():
        for up in ups:
            children.setdefault(up, []).append(iid)
    seen = list(dict.fromkeys(start))
    i = 0
    while i < len(seen):
        for c in children.get(seen[i], []):
            if c not in seen:
                seen.append(c)
        i += 1
    return seen


def released(rows: list[InstanceRow], roots: Iterable[str], run_roots: bool,
             outside: Mapping[str, str] | None = None) -> list[str]:
    """What runs when `roots` are released: the roots themselves (`run_roots`) and the `blocked`
    instances behind them (their downstream, the later dates of their group), less any that still has
    an upstream or an earlier date of its group outside this set that did not succeed. `rows` are one
    backfill's; `outside` gives the statuses of upstream instances of other backfills."""
    by_id = {r.id: r for r in rows}
    elsewhere = outside or {}

    def ok(u: str) -> bool:
        return (by_id[u].status if u in by_id else elsewhere.get(u, "success")) in ("success", "dry_run")

    root_ids = [i for i in dict.fromkeys(roots) if i in by_id]
    starts = [by_id[i] for i in root_ids]
    first_of: dict[int, int] = {}
    for p in starts:
        first_of[p.group] = min(first_of.get(p.group, p.position), p.position)
    later = [r.id for r in rows if r.status == "blocked" and r.group in first_of and r.position > first_of[r.group]]
    chosen = [i for i in downstream_ids(rows, [*root_ids, *later])
              if by_id[i].status == "blocked" or (run_roots and i in root_ids)]
    keep = set(chosen)
    while True:  # an upstream or earlier date left out that did not succeed still blocks: leave those alone
        stuck: dict[int, int] = {}  # group -> first position holding an instance that neither runs nor succeeded
        for r in rows:
            if r.id not in keep and r.status not in ("success", "dry_run"):
                stuck[r.group] = min(stuck.get(r.group, r.position), r.position)
        drop = {i for i in keep if by_id[i].position > stuck.get(by_id[i].group, by_id[i].position)
                or any(u not in keep and not ok(u) for u in by_id[i].upstream)}
        if not drop:
            return [i for i in chosen if i in keep]
        keep -= drop


def nothing_to_resume(target: str, rows: list[InstanceRow]) -> str:
    """Why `resume` has nothing to do, in one line."""
    if "/" in target:
        r = rows[0]
        hint = f"; `backfill why {r.id}` tells why" if r.status in BAD else ""
        return f"nothing to resume: {r.id} is {r.status}, neither paused, skipped nor held{hint}"
    bad = sum(r.status in BAD for r in rows)
    active = sum(r.status not in FINISHED for r in rows)
    if bad:
        why = f"{bad} failed, blocked or killed instance(s) run again with `backfill rerun {target} --failed`"
    elif active:
        why = f"{active} instance(s) still pending, waiting or running"
    else:
        why = f"all {len(rows)} instance(s) succeeded"
    return f"nothing to resume in '{target}': no instance is paused, skipped or held; {why}"


class Operations:
    """Steering from any terminal. While an apply runs, requests go through flags it polls."""

    def __init__(self, root: Path, ledger: Ledger, say: Callable[[str], None]):
        self.root, self.ledger, self.say = root, ledger, say

    def apply_running(self) -> bool:
        holder = self.ledger.lock_holder()
        return bool(holder and holder["alive"])

    def set_success(self, target: str) -> list[str]:
        if "/" not in target:  # a backfill name, even of a backfill with a single instance
            raise UserError("set-success takes one instance id BACKFILL/TABLE/DS")
        name, rows = resolve(self.ledger, target)
        row = rows[0]
        if row.status == "success":  # executed, or set already: setting it again would only make its downstream stale
            how = "was already set to success by an operator" if (row.error or "").startswith("set to success") \
                else "already succeeded"
            raise UserError(f"{row.id} {how}; nothing to set (rerun it with "
                            f"`backfill rerun {name} --instance {row.id}` to recompute it)")
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

    def kill(self, target: str) -> tuple[list[str], bool]:
        """(the instances flagged, whether the running apply acts on some of them rather than this call)."""
        name, rows = resolve(self.ledger, target)
        active = [r for r in rows if r.status not in FINISHED]
        if not active:
            raise UserError(f"nothing to kill: no instance of '{target}' is pending, waiting or running")
        self.ledger.set_flags([r.id for r in active], kill_requested=True)
        left = self._left_to_apply(name, active)
        self.ledger.set_flags([r.id for r in active if r.id not in left], status="killed",
                              error="killed by an operator", ended_at=time.time())
        return [r.id for r in active], bool(left)

    def pause(self, target: str) -> tuple[list[str], bool]:
        """(the instances flagged, whether the running apply acts on some of them rather than this call)."""
        name, rows = resolve(self.ledger, target)
        todo = [r for r in rows if r.status in ("pending", "waiting")]
        if not todo:
            raise UserError(f"nothing to pause: no instance of '{target}' is pending or waiting")
        self.ledger.set_flags([r.id for r in todo], held=True)
        left = self._left_to_apply(name, todo)
        self.ledger.set_flags([r.id for r in todo if r.id not in left], status="paused",
                              error="paused by an operator; `backfill resume` runs it")
        return [r.id for r in todo], bool(left)

    def _left_to_apply(self, name: str, rows: list[InstanceRow]) -> set[str]:
        """Of `rows`, those the running apply acts on (it polls the flags): none without a running apply
        or of a backfill whose runtime is ahead (no apply runs it before), never a `pending` one (no apply
        has started it; if the running one reaches it, the flag is read then). The rest change at once."""
        if not self.apply_running() or scheduled_for(self.ledger, name) is not None:
            return set()
        return {r.id for r in rows if r.status != "pending"}

    def resumes_paused(self, target: str) -> bool:
        """Whether resuming `target` runs something (a paused instance), not only clears held flags."""
        return any(r.status == "paused" for r in resolve(self.ledger, target)[1])

    def to_resume(self, target: str) -> tuple[str, list[str], int]:
        """Release what is held: clear operator pauses and take skipped instances out of skip (skipping
        is holding). Returns (backfill, what must run now, how many held flags were cleared): the paused
        instances (skipped or paused by an operator) and what they blocked (their downstream, the later
        dates of their group), never what a failure or a kill blocks (`rerun --failed` is for those).
        Of a backfill whose runtime is still ahead, every paused one: they wait for it (`wait_for_schedule`)."""
        name, rows = resolve(self.ledger, target)
        held = [r.id for r in rows if r.held]
        paused = [r.id for r in rows if r.status == "paused"]
        if not held and not paused:
            raise UserError(nothing_to_resume(target, rows))
        self.ledger.set_flags(held, held=False)
        if not paused:
            return name, [], len(held)
        all_rows = self.ledger.instances(backfill=name)
        chosen = released(all_rows, paused, run_roots=True, outside=self._outside(all_rows))
        if scheduled_for(self.ledger, name) is not None:  # nothing runs before its time: all of them wait for it
            chosen = list(dict.fromkeys([*paused, *chosen]))
        skipped = {r.id for r in all_rows if r.mode == "skip"}
        self.ledger.set_flags([i for i in chosen if i in skipped], mode="run")
        return name, chosen, len(held)

    def wait_for_schedule(self, name: str, ids: list[str]) -> str | None:
        """Released instances of a backfill whose runtime is still ahead go back to `waiting` for it (as
        apply records them) instead of running now; returns that runtime, or None (they may run now)."""
        runtime = scheduled_for(self.ledger, name)
        if runtime is not None:
            self.ledger.set_flags(ids, status="waiting", error=None, held=False, started_at=None, ended_at=None)
        return runtime

    def to_release(self, instance: str) -> tuple[str, list[str]]:
        """What an instance (now successful) was blocking and may run: `set-success --resume`."""
        name, _ = resolve(self.ledger, instance)
        rows = self.ledger.instances(backfill=name)
        return name, released(rows, [instance], run_roots=False, outside=self._outside(rows))

    def _outside(self, rows: list[InstanceRow]) -> dict[str, str]:
        """Statuses of the upstream instances of other backfills that these rows read."""
        mine = {r.id for r in rows}
        ids = sorted({u for r in rows for u in r.upstream if u not in mine})
        return {r.id: r.status for n in range(0, len(ids), 500) for r in self.ledger.instances(ids=ids[n:n + 500])}

    def to_rerun(self, target: str, failed_only: bool, instances: list[str], downstream: bool
                 ) -> tuple[str, list[str]]:
        name, rows = resolve(self.ledger, target)
        if instances:
            known = {r.id for r in rows}
            for i in instances:
                if i not in known:
                    raise UserError(f"no instance '{i}' in backfill '{name}'")
            chosen = list(dict.fromkeys(instances))  # each once, in the order given
        elif failed_only:
            chosen = [r.id for r in rows if r.status in BAD]
        else:
            chosen = [r.id for r in rows]
        if downstream:
            chosen = downstream_ids(self.ledger.instances(backfill=name), chosen)
        if not chosen:
            raise UserError(f"nothing to rerun in '{name}'" + (" (no failed instance)" if failed_only else ""))
        return name, chosen
