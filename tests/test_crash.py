"""Crash safety: `kill -9` of the applying process at several points, then apply again.

Every partition must end up written exactly once (one committed write marker per instance in the
warehouse), equal to the oracle, and the ledger must say success for all of them.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import oracle
import pytest
from conftest import TUTORIAL_TABLES, warehouse_rows

from backfill.run.apply import apply_project

BACKFILL = str(Path(sys.executable).parent / "backfill")
INTEGRATION = [date(2026, 6, 25) + timedelta(days=i) for i in range(20)]
LOGICAL = [date(2026, 7, 1) + timedelta(days=i) for i in range(14)]


def _count(state: Path, where: str) -> int:
    if not state.exists():
        return -1
    try:
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute(f"SELECT count(*) FROM bf_instances WHERE {where}").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return -1


@pytest.mark.parametrize("kill_after", [0, 15, 60, 100])
def test_kill_9_mid_apply_then_apply_again(tutorial: Path, prefect_api: str, kill_after: int) -> None:
    state = tutorial / ".backfill" / "state.db"
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(tutorial)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # kill point 0: as soon as it recorded the instances it is about to run, before most writes
    where = "status = 'success'" if kill_after else "1 = 1"
    while _count(state, where) < max(kill_after, 1) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    killed_mid_run = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed_mid_run, "the apply finished before the kill point; the test would prove nothing"

    messages: list[str] = []
    report = apply_project(tutorial, say=messages.append)
    assert report.ok, report.backfills

    loaded = set(INTEGRATION)
    for table in TUTORIAL_TABLES:
        for ds in (INTEGRATION if table.startswith("ods_") else LOGICAL):
            assert warehouse_rows(tutorial, table, ds.isoformat()) == oracle.expected(tutorial, table, ds, loaded)

    con = duckdb.connect(str(tutorial / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        # attempt ids are `run:instance:n`: one committed attempt per instance
        writes = con.execute("SELECT split_part(attempt_id, ':', 2), count(*) FROM _backfill_commits "
                             "GROUP BY 1").fetchall()
    finally:
        con.close()
    assert len(writes) == 116
    assert all(n == 1 for _, n in writes), [w for w in writes if w[1] != 1]

    ledger = sqlite3.connect(str(state))
    try:
        statuses = dict(ledger.execute("SELECT status, count(*) FROM bf_instances GROUP BY 1").fetchall())
        partitions = ledger.execute("SELECT count(*) FROM bf_partitions").fetchone()[0]
        locks = ledger.execute("SELECT count(*) FROM bf_locks").fetchone()[0]
    finally:
        ledger.close()
    assert statuses == {"success": 116}
    assert partitions == 116
    assert locks == 0
    assert any("broke the lock" in m for m in messages)
