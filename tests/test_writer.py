"""The ledger writer: one transaction an interval, in order, everything written at close."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from backfill.run.writer import LedgerWriter
from backfill.state.ledger import Ledger

IDS = [f"bf/t/2026-07-{d:02d}" for d in range(1, 21)]


class HeldLedger(Ledger):
    """A real SQLite ledger whose first batch waits until the test lets it go; it records the ids
    of each batch it wrote."""

    def __init__(self, url: str) -> None:
        super().__init__(Ledger.open(url).engine)
        self.batches: list[list[str]] = []
        self.writing = threading.Event()
        self.go_on = threading.Event()

    def apply_updates(self, updates: Sequence[Mapping[str, Any]], written: set[str] | None = None) -> set[str]:
        self.writing.set()
        self.go_on.wait(10)
        done = super().apply_updates(updates, written)
        self.batches.append([str(u["id"]) for u in updates])
        return done


def ledger_with_instances(tmp_path: Path) -> HeldLedger:
    ledger = HeldLedger(f"sqlite:///{tmp_path / 'state.db'}")
    ledger.enqueue("bf", "key", "backfills/bf.yaml", None, [
        {"id": i, "backfill": "bf", "table_name": "t", "ds": i[-10:], "grp": 1, "position": n, "seq": n,
         "mode": "run", "fields": None, "linked": None, "upstream": "[]", "sql": "SELECT 1", "fingerprint": "fp",
         "table_fingerprint": "tfp", "run_id": "", "template_fingerprint": "x", "batch": None, "batch_sql": None,
         "ranged": None, "reads": "{}"} for n, i in enumerate(IDS)])
    return ledger


def until(check: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return bool(check())


def test_what_arrives_during_a_write_waits_for_the_next_turn_as_one_transaction(tmp_path: Path) -> None:
    ledger = ledger_with_instances(tmp_path)
    writer = LedgerWriter(ledger, interval=0.5, max_batch=100)
    try:
        writer.put(IDS[0], {"status": "running"})
        assert ledger.writing.wait(5)  # the first turn took one change and is writing it
        for i in IDS[1:6]:  # these arrive during that write
            writer.put(i, {"status": "success", "rows": 1})
        ledger.go_on.set()
        assert until(lambda: len(ledger.batches) == 1)
        time.sleep(0.1)  # well inside the interval: no second, small transaction
        assert ledger.batches == [IDS[:1]]
        assert until(lambda: len(ledger.batches) == 2)  # the next turn: all five together
        assert ledger.batches[1] == IDS[1:6]
    finally:
        ledger.go_on.set()
        writer.close()
    rows = {r.id: r for r in ledger.instances()}
    assert rows[IDS[0]].status == "running" and all(rows[i].status == "success" and rows[i].rows == 1
                                                    for i in IDS[1:6])
    ledger.close()


def test_close_writes_everything_queued_in_batches_in_order(tmp_path: Path) -> None:
    ledger = ledger_with_instances(tmp_path)
    ledger.go_on.set()
    writer = LedgerWriter(ledger, interval=60, max_batch=4)  # no turn comes before close()
    for i in IDS[:10]:
        writer.put(i, {"status": "success", "rows": 2})
    writer.close()
    assert ledger.batches == [IDS[:4], IDS[4:8], IDS[8:10]]
    assert sum(r.status == "success" for r in ledger.instances()) == 10
    ledger.close()


def test_a_backlog_during_a_run_is_written_in_whole_batches_without_waiting(tmp_path: Path) -> None:
    ledger = ledger_with_instances(tmp_path)
    writer = LedgerWriter(ledger, interval=0.5, max_batch=4)
    try:
        writer.put(IDS[0], {"status": "running"})
        assert ledger.writing.wait(5)
        for i in IDS[1:11]:  # ten changes during the first write: two whole batches and two more
            writer.put(i, {"status": "success", "rows": 3})
        ledger.go_on.set()
        assert until(lambda: len(ledger.batches) == 3)
        time.sleep(0.05)  # inside the interval: the two left wait for the next turn
        assert ledger.batches == [IDS[:1], IDS[1:5], IDS[5:9]]
        assert until(lambda: len(ledger.batches) == 4)
        assert ledger.batches[3] == IDS[9:11]
    finally:
        ledger.go_on.set()
        writer.close()
    ledger.close()
