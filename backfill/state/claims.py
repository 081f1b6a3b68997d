"""Instance claims: exactly once across processes.

Before an instance executes, a conditional UPDATE makes it the claimant's: it succeeds only when
nobody claimed it and it is still `pending` or `waiting`, so of two processes given the same
instance exactly one runs it. `claim` takes instances as they start (status `running`); `reserve`
takes many ahead in one statement, their status left `waiting` (a ledger write per instance in the
path of each instance costs more than the write of a small partition). A claim carries a lease
(`lease_until`) that its holder renews while it runs. A claim is never taken over by another
runner: only recovery (run/records.py), under the apply lock, releases the claims of a holder that
is gone (lease expired, flow run crashed or cancelled, local process dead), after settling the
instance from the warehouse's write markers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .schema import T_INSTANCES, T_LOCKS

__all__ = ["ClaimTable", "lease_seconds", "process_claimant"]


def lease_seconds() -> float:
    """How long a claim holds without renewal (BACKFILL_LEASE_SECONDS, default 60)."""
    try:
        return max(1.0, float(os.environ.get("BACKFILL_LEASE_SECONDS", "60")))
    except ValueError:
        return 60.0


def process_claimant() -> str:
    return f"proc:{socket.gethostname()}:{os.getpid()}"


class ClaimTable:
    """The claim queries, mixed into `Ledger`."""

    engine: Engine

    def claim(self, ids: Sequence[str], claimant: str, lease: float) -> bool:
        """Claim instances (one, or a batch's members) for `claimant`, all or none, in one
        conditional UPDATE; True if they are now ours (and `running`)."""
        now = time.time()
        c = T_INSTANCES.c
        with self.engine.connect() as conn:
            n = conn.execute(T_INSTANCES.update().where(
                c.id.in_(list(ids)), c.claimed_by.is_(None), c.status.in_(("pending", "waiting")),
            ).values(claimed_by=claimant, lease_until=now + lease, status="running", started_at=now,
                     updated_at=now)).rowcount
            if n != len(ids):  # nothing, or part of a batch is elsewhere: take nothing
                conn.rollback()
                return False
            conn.commit()
        return True

    def reserve(self, ids: Sequence[str], claimant: str, lease: float) -> set[str]:
        """Claim instances before their turn, each on its own, their status left as it is (a reserved
        instance stays `waiting` until it starts; its runner records `running` then): one conditional
        UPDATE per 500 instances instead of one per instance as each starts. Returns those this call
        claimed. On an error nothing stays reserved (as far as the ledger can still be written)."""
        c = T_INSTANCES.c
        mine: set[str] = set()
        try:
            for start in range(0, len(ids), 500):
                now = time.time()
                with self.engine.begin() as conn:
                    mine.update(str(r[0]) for r in conn.execute(T_INSTANCES.update().where(
                        c.id.in_(list(ids[start:start + 500])), c.claimed_by.is_(None),
                        c.status.in_(("pending", "waiting")),
                    ).values(claimed_by=claimant, lease_until=now + lease, updated_at=now).returning(c.id)))
        except BaseException:
            # a reservation that may have committed is taken back
            with contextlib.suppress(Exception), self.engine.begin() as conn:
                for start in range(0, len(ids), 500):
                    conn.execute(T_INSTANCES.update().where(
                        c.id.in_(list(ids[start:start + 500])), c.claimed_by == claimant,
                        c.status.in_(("pending", "waiting"))).values(claimed_by=None, lease_until=None))
            raise
        return mine

    def mark_waiting(self, ids: Sequence[str]) -> None:
        """`pending` -> `waiting` for a starting run; never touches what another runner moved on."""
        c = T_INSTANCES.c
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(T_INSTANCES.update().where(c.id.in_(list(ids[start:start + 500])), c.status == "pending")
                             .values(status="waiting", started_at=None, ended_at=None, error=None, rows=None,
                                     updated_at=time.time()))

    def renew(self, claimant: str, lease: float) -> int:
        """Extend every claim of `claimant` not settled yet (running, or reserved and waiting its turn)."""
        c = T_INSTANCES.c
        with self.engine.begin() as conn:
            return int(conn.execute(T_INSTANCES.update().where(c.claimed_by == claimant,
                                                               c.status.in_(("running", "waiting")))
                                    .values(lease_until=time.time() + lease)).rowcount or 0)

    def release(self, ids: Sequence[str]) -> None:
        """Forget the claims of instances recovery has settled."""
        if ids:
            with self.engine.begin() as conn:
                conn.execute(T_INSTANCES.update().where(T_INSTANCES.c.id.in_(list(ids)))
                             .values(claimed_by=None, lease_until=None))

    def statuses(self, ids: Sequence[str]) -> dict[str, tuple[str, int | None, str | None]]:
        """instance id -> (status, rows, error), read by runners waiting on other processes."""
        if not ids:
            return {}
        c = T_INSTANCES.c
        with self.engine.connect() as conn:
            return {r.id: (r.status, r.rows, r.error) for r in conn.execute(
                sa.select(c.id, c.status, c.rows, c.error).where(c.id.in_(list(ids))))}

    def run_ids(self, ids: Sequence[str]) -> dict[str, str | None]:
        """instance id -> the apply run it was last recorded for."""
        if not ids:
            return {}
        c = T_INSTANCES.c
        with self.engine.connect() as conn:
            return {r.id: r.run_id for r in conn.execute(sa.select(c.id, c.run_id).where(c.id.in_(list(ids))))}

    def set_lock_flow_runs(self, flow_runs: str, name: str = "apply") -> None:
        with self.engine.begin() as conn:
            conn.execute(T_LOCKS.update().where(T_LOCKS.c.name == name, T_LOCKS.c.pid == os.getpid())
                         .values(flow_runs=flow_runs))
