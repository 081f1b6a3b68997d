"""How a run takes part in the ledger's claims (state/claims.py): each instance (or batch) is claimed
before it executes, instances of the same run that execute elsewhere are followed through the
ledger, and the flow runs whose claims are void are asked of the Prefect server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..state.ledger import InstanceRow, Ledger
from .jobs import Job, Outcome

__all__ = ["adopt", "attach_claims", "ended_flow_runs", "prepare_run", "tend"]


def ended_flow_runs(ids: Sequence[str]) -> set[str]:
    """Those of the given Prefect flow runs that ended crashed or cancelled (their claims are void)."""
    from .workpool import flow_run_states

    return {i for i, state in flow_run_states(ids).items() if state in ("CRASHED", "CANCELLED")}


def attach_claims(run: Any, ledger: Ledger, claimant: str, lease: float) -> None:
    """Each instance is claimed in the ledger before it executes (a group's single instances all at
    once when the group starts: `reserve`); instances of the same run that execute elsewhere
    (another group's flow run) are followed through the ledger."""
    run.claim = lambda ids: ledger.claim(ids, claimant, lease)
    run.reserve = lambda ids: ledger.reserve(ids, claimant, lease)

    def outside(ids: Sequence[str]) -> dict[str, tuple[str, int | None, str | None]]:
        mine = {i for i, r in ledger.run_ids(ids).items() if r == run.run_id}
        return {i: st for i, st in ledger.statuses(sorted(mine)).items()}
    run.outside = outside


def adopt(run: Any, jobs: Sequence[Job]) -> dict[str, Outcome] | None:
    """Another runner holds the claim of these jobs (an instance, or a batch's members): wait for
    their outcomes in the ledger and write nothing; None when the claim was released without an
    outcome and is ours now (run them)."""
    ids = [j.row.id for j in jobs]
    while True:
        time.sleep(0.5)
        found = run.outside_of(ids)
        states = {i: found.get(i, ("failed", None, "claimed by another run")) for i in ids}
        if all(st[0] not in ("pending", "waiting", "running") for st in states.values()):
            return {i: Outcome(st[0], rows=st[1], error=st[2], adopted=True) for i, st in states.items()}
        if run.claim is not None and run.claim(ids):
            return None


def tend(run: Any, ledger: Ledger, claimant: str, lease: float, stop: threading.Event) -> threading.Thread:
    """A started thread that, every 0.5 s until `stop` is set, applies the operator flags (pause,
    kill) of the run's unfinished instances and, every third of `lease`, renews the run's claims. A
    ledger that fails meanwhile is tried again at the next turn (the run's ledger writer reports it):
    a lease left to expire would let the next apply take instances that are still running."""
    def loop() -> None:
        renewed = time.monotonic()
        while not stop.wait(0.5):
            with contextlib.suppress(Exception):
                active = run.active_ids()
                if active:
                    run.apply_flags(ledger.flags(run.name, active))
                if time.monotonic() - renewed > lease / 3:
                    ledger.renew(claimant, lease)
                    renewed = time.monotonic()

    thread = threading.Thread(target=loop, name="ledger-tend", daemon=True)
    thread.start()
    return thread


def prepare_run(run: Any, ledger: Ledger, rows: Sequence[InstanceRow]) -> None:
    """What a run takes from the ledger before it starts, then marks there: its instances' earlier
    attempts (their numbering goes on), the statuses of upstream instances it does not run itself, and
    `waiting` for its own."""
    ids = [r.id for r in rows]
    run.earlier_attempts = ledger.attempt_counts(ids)
    outside = sorted({u for r in rows for u in r.upstream} - set(ids))
    run.external = {i: status for i, (status, _, _) in ledger.outcomes(outside).items()}
    ledger.mark_waiting(ids)
