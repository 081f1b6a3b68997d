"""The one-apply-at-a-time policy over the ledger's lock: wait, break a dead local holder, refuse."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import UserError
from ..state.ledger import Ledger

__all__ = ["hold_lock"]


@contextmanager
def hold_lock(ledger: Ledger, purpose: str, timeout: float, say: Callable[[str], None]) -> Iterator[None]:
    """The one-apply-at-a-time lock: wait up to `timeout` seconds, refuse a dead holder's lock."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        holder = ledger.try_lock(purpose)
        if holder is None:
            break
        who = f"pid {holder['pid']} on {holder['host']} ({holder['purpose']})"
        live_runs = _live_flow_runs(holder) if not holder["alive"] else []
        if live_runs:  # its process is gone, but flow runs it launched on a work pool still run
            holder["alive"] = True
            who += f", whose {len(live_runs)} flow run(s) on a work pool still run (e.g. {live_runs[0]})"
        if not holder["alive"]:
            if holder["host"] == socket.gethostname() and ledger.unlock(pid=int(holder["pid"])):
                say(f"note: broke the lock of {who}, which is no longer running; recovering its instances")
                continue
            raise UserError(f"the ledger is locked by {who}, which is not known to be running; "
                            "run `backfill unlock` to break the lock")
        if time.monotonic() >= deadline:
            raise UserError(f"another apply holds the ledger lock: {who}; try again later or "
                            "raise --lock-timeout")
        if not told:
            say(f"waiting for the ledger lock held by {who} ...")
            told = True
        time.sleep(0.2)
    try:
        yield
    finally:
        ledger.unlock(pid=os.getpid())


def _live_flow_runs(holder: dict[str, object]) -> list[str]:
    """The flow runs a lock holder launched that have not ended (asked of the Prefect server)."""
    ids = json.loads(str(holder.get("flow_runs") or "[]"))
    if not ids:
        return []
    from .workpool import FINAL, flow_run_states

    states = flow_run_states(ids)
    return [i for i in ids if states.get(i, "PENDING") not in FINAL]
