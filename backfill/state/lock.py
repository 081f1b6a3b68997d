"""The apply lock: one row per lock name in `bf_locks`, taken by an insert that fails if it is held.

Policy (wait, break a dead holder's lock) lives with whoever takes it; this is the bookkeeping.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .schema import T_LOCKS

__all__ = ["LockTable", "pid_alive"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



class LockTable:
    """The lock's queries, mixed into `Ledger`."""

    engine: Engine

    def try_lock(self, purpose: str, name: str = "apply") -> dict[str, Any] | None:
        """Take the lock; None on success, else who holds it (with `alive`)."""
        me = {"name": name, "pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
              "acquired_at": time.time()}
        try:
            with self.engine.begin() as conn:
                conn.execute(T_LOCKS.insert().values(**me))
            return None
        except sa.exc.IntegrityError:
            holder = self.lock_holder(name)
            return holder or self.try_lock(purpose, name)

    def lock_holder(self, name: str = "apply") -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(T_LOCKS).where(T_LOCKS.c.name == name)).first()
        if row is None:
            return None
        holder = dict(row._mapping)
        holder["alive"] = holder["host"] != socket.gethostname() or pid_alive(int(holder["pid"]))
        return holder

    def unlock(self, name: str = "apply", pid: int | None = None) -> bool:
        with self.engine.begin() as conn:
            q = T_LOCKS.delete().where(T_LOCKS.c.name == name)
            if pid is not None:
                q = q.where(T_LOCKS.c.pid == pid)
            return bool(conn.execute(q).rowcount)
