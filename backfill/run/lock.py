"""The one-apply-at-a-time policy over the ledger's lock: wait, break a dead local holder, refuse."""

from __future__ import annotations

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
