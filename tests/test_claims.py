"""Claims made ahead (`Ledger.reserve`): a group's single instances claimed in a few ledger writes when
the group starts, their status left `waiting` until each starts; exactly once still holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from backfill.run.claiming import attach_claims, tend
from backfill.run.engines.duckdb_engine import DuckDBEngine
from backfill.run.records import ApplyRecords
from backfill.run.scheduler import BackfillRun
from backfill.run.writer import LedgerWriter
from backfill.spec.model import Field, Table, Template
from backfill.state.ledger import Ledger

DATES = [f"2026-07-{d:02d}" for d in range(1, 7)]
SQL = "SELECT 1 AS id, 2 AS v"


def table() -> Table:
    return Table(name="t", kind="fact", fields=(Field("id", "BIGINT"), Field("v", "BIGINT")),
                 template=Template(SQL, "x.sql"), spec_file="tables/t.yaml", granularity="day")


def ledger_with(tmp_path: Path, dates: list[str] = DATES, groups: int = 1) -> Ledger:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'state.db'}")
    rows: list[dict[str, object]] = [
        {"id": f"bf/t/{ds}", "backfill": "bf", "table_name": "t", "ds": ds, "grp": 1 + n % groups,
             "position": n // groups, "seq": n,
             "mode": "run", "fields": None, "linked": None, "upstream": "[]", "sql": SQL, "fingerprint": "fp",
             "table_fingerprint": "tfp", "run_id": "", "template_fingerprint": "x", "batch": None,
             "batch_sql": None, "ranged": None, "reads": "{}"} for n, ds in enumerate(dates)]
    ledger.enqueue("bf", "key", "backfills/bf.yaml", None, rows)
    ledger.mark_waiting([str(r["id"]) for r in rows])
    return ledger


def claiming_run(tmp_path: Path, ledger: Ledger, ids: list[str]) -> tuple[BackfillRun, DuckDBEngine, LedgerWriter,
                                                                         ThreadPoolExecutor]:
    """A run of `ids` (apply run "run1") on a fresh warehouse, claiming as "me" with 60 s leases."""
    engine = DuckDBEngine("w.duckdb", tmp_path)
    t = table()
    engine.ensure_tables([t])
    writer = LedgerWriter(ledger, interval=0.01)
    pool = ThreadPoolExecutor(max_workers=2)
    ApplyRecords(ledger).claim(ids, "run1")
    run = BackfillRun("bf", ledger.instances(ids=ids), {"t": t}, engine, writer, pool, "run1", max_parallel=2)
    attach_claims(run, ledger, "me", 60)
    return run, engine, writer, pool


def test_reserve_claims_each_leaves_status_and_is_renewed(tmp_path: Path) -> None:
    ledger = ledger_with(tmp_path)
    ids = [f"bf/t/{ds}" for ds in DATES]
    assert ledger.claim([ids[0]], "other", 60)  # another runner's: running, claimed
    assert ledger.reserve(ids, "me", 60) == set(ids[1:])
    rows = {r.id: r for r in ledger.instances()}
    assert rows[ids[0]].status == "running" and rows[ids[0]].claimed_by == "other"
    assert all(rows[i].status == "waiting" and rows[i].claimed_by == "me" for i in ids[1:])
    assert ledger.reserve(ids, "me", 60) == set()  # only what this call claimed
    assert ledger.reserve(ids, "third", 60) == set()
    assert not ledger.claim([ids[1]], "third", 60)  # reserved: nobody else claims it
    assert {r.id for r in ApplyRecords(ledger).live_claims()} == set(ids)
    before = min(rows[i].lease_until or 0 for i in ids[1:])
    time.sleep(0.01)
    assert ledger.renew("me", 120) == len(ids) - 1  # waiting reservations are renewed too
    assert all((r.lease_until or 0) > before for r in ledger.instances() if r.claimed_by == "me")
    ledger.close()


def test_reserve_skips_settled_instances(tmp_path: Path) -> None:
    ledger = ledger_with(tmp_path)
    ids = [f"bf/t/{ds}" for ds in DATES]
    ledger.set_flags(ids[:2], status="success")
    assert ledger.reserve(ids, "me", 60) == set(ids[2:])
    ledger.close()


def test_a_run_claims_ahead_and_follows_what_another_runner_holds(tmp_path: Path) -> None:
    """The group's instances are reserved when it starts: no claim per instance; the one another runner
    holds is not written here, its outcome is read from the ledger; every claim ends with its instance."""
    ledger = ledger_with(tmp_path)
    ids = [f"bf/t/{ds}" for ds in DATES]
    foreign = ids[2]
    assert ledger.claim([foreign], "other", 60)
    run, engine, writer, pool = claiming_run(tmp_path, ledger, ids)
    claimed: list[list[str]] = []
    real_claim = run.claim
    assert real_claim is not None

    def counting(some: object) -> bool:
        claimed.append(list(some))  # type: ignore[call-overload]
        return real_claim(some)  # type: ignore[arg-type]

    run.claim = counting

    def other_runner() -> None:  # ends its instance once ours before it ended
        while ledger.instances(ids=[ids[1]])[0].status != "success":
            time.sleep(0.02)
        ledger.apply_updates([{"id": foreign, "values": {"status": "success", "rows": 1, "claimed_by": None,
                                                          "lease_until": None}}])

    helper = threading.Thread(target=other_runner)
    helper.start()
    counts = run.run_group(1)
    helper.join()
    pool.shutdown()
    writer.close()
    assert counts == {"total": 6, "done": 6, "failed": 0}
    assert claimed == [[foreign]] * len(claimed) and claimed  # only the foreign one, claimed at its turn
    markers = sorted(str(r[0]).split(":")[1] for r in engine.query("SELECT attempt_id FROM _backfill_commits"))
    assert markers == sorted(set(ids) - {foreign})
    final = ledger.instances(ids=ids)
    assert [r.status for r in final] == ["success"] * 6
    assert all(r.claimed_by is None and r.lease_until is None for r in final)
    assert ApplyRecords(ledger).live_claims() == []
    engine.close()
    ledger.close()


def test_a_run_reserves_every_group_ahead_in_one_go(tmp_path: Path) -> None:
    """Before its groups start, a run claims all their single instances with one reservation; the
    groups then claim nothing more as they start or as each instance starts."""
    ledger = ledger_with(tmp_path, groups=2)
    ids = [f"bf/t/{ds}" for ds in DATES]
    run, engine, writer, pool = claiming_run(tmp_path, ledger, ids)
    reserved: list[list[str]] = []
    claimed: list[list[str]] = []
    real_reserve, real_claim = run.reserve, run.claim
    assert real_reserve is not None and real_claim is not None

    def reserving(some: Sequence[str]) -> set[str]:
        reserved.append(list(some))
        return real_reserve(some)

    def claiming(some: Sequence[str]) -> bool:
        claimed.append(list(some))
        return real_claim(some)

    run.reserve, run.claim = reserving, claiming
    run.reserve_ahead()
    assert [sorted(r) for r in reserved] == [sorted(ids)]
    assert all(r.claimed_by == "me" and r.status == "waiting" for r in ledger.instances(ids=ids))
    with ThreadPoolExecutor(max_workers=2) as groups:
        counts = list(groups.map(run.run_group, [1, 2]))
    pool.shutdown()
    writer.close()
    assert counts == [{"total": 3, "done": 3, "failed": 0}] * 2
    assert len(reserved) == 1 and claimed == []  # the groups reserved nothing again, claimed nothing
    final = ledger.instances(ids=ids)
    assert [r.status for r in final] == ["success"] * 6
    assert all(r.claimed_by is None for r in final)
    engine.close()
    ledger.close()


class _FailsOnce(Ledger):
    """A real ledger whose first lease renewal and first flag read fail, as a dropped connection would."""

    failed: set[str]

    def renew(self, claimant: str, lease: float) -> int:
        if "renew" not in self.failed:
            self.failed.add("renew")
            raise ConnectionError("the ledger went away")
        return super().renew(claimant, lease)

    def flags(self, backfill: str, ids: Sequence[str]) -> dict[str, tuple[bool, bool]]:
        if "flags" not in self.failed:
            self.failed.add("flags")
            raise ConnectionError("the ledger went away")
        return super().flags(backfill, ids)


def test_tending_goes_on_after_the_ledger_failed_once(tmp_path: Path) -> None:
    """Leases keep being renewed, and operator flags keep being applied, after a ledger error: a lease
    left to expire would let the next apply take instances that are still running."""
    ledger_with(tmp_path).close()
    ledger = _FailsOnce(Ledger.open(f"sqlite:///{tmp_path / 'state.db'}").engine)
    ledger.failed = set()
    ids = [f"bf/t/{ds}" for ds in DATES]
    reserved_at = time.time()
    assert ledger.reserve(ids, "me", 0.9) == set(ids)
    ledger.set_flags([ids[0]], held=True)
    run = BackfillRun("bf", ledger.instances(ids=ids), {"t": table()}, None, None, None, "run1")  # type: ignore[arg-type]
    stop = threading.Event()
    thread = tend(run, ledger, "me", 0.9, stop)

    def renewed() -> bool:  # after the failed renewal: later than the reservation's own lease
        return all((r.lease_until or 0) > reserved_at + 1.0 for r in ledger.instances(ids=ids))

    deadline = time.monotonic() + 30
    while not (run._held and renewed()) and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join()
    assert ledger.failed == {"renew", "flags"}
    assert run._held == {ids[0]}  # applied at a later turn
    assert renewed()
    ledger.close()
