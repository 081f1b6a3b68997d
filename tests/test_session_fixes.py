"""Operations whose words must match what happened: a rerun the lock refuses says nothing ran."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from steering import cli
from test_contract_fixes import _project


def _held_by(p: Path, proc: subprocess.Popen[bytes]) -> None:
    con = sqlite3.connect(p / ".backfill" / "state.db")
    con.execute("INSERT INTO bf_locks (name, pid, host, purpose, acquired_at) VALUES ('apply', ?, ?, 'apply', ?)",
                (proc.pid, socket.gethostname(), time.time()))
    con.commit()
    con.close()


@pytest.mark.parametrize("command", [
    ("rerun", "bf", "--instance", "bf/a/2026-01-01"),
    ("rerun", "bf", "--instance", "bf/a/2026-01-01", "--json"),
    ("resume", "bf/b/2026-01-01"),
])
def test_an_operation_refused_by_the_lock_does_not_announce_a_run(tmp_path: Path, prefect_api: str,
                                                                   command: tuple[str, ...]) -> None:
    p = _project(tmp_path / "p", "name: bf\ntargets: [{table: a}]\nscope: downstream\n"
                                 "data_timestamp: [2026-01-01]\nskip: [b]\n")
    applied = cli(p, "apply", "--yes")
    assert applied.exit_code == 1, applied.output  # b skipped (paused), c blocked
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _held_by(p, holder)
        refused = cli(p, *command)
    finally:
        holder.kill()
        holder.wait()
    assert refused.exit_code == 1, refused.output
    assert refused.stdout == "" if "--json" not in command else '"ok": false' in refused.stdout
    assert "rerunning" not in refused.output and "resuming" not in refused.output
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"error: another apply holds the ledger lock: pid {holder.pid}")

    # with the lock free, the same command says it runs, and does
    con = sqlite3.connect(p / ".backfill" / "state.db")
    con.execute("DELETE FROM bf_locks")
    con.commit()
    con.close()
    again = cli(p, *command)
    assert again.exit_code == 0, again.output
    if "--json" in command:
        assert '"ok": true' in again.stdout and "rerunning" not in again.stdout
    elif command[0] == "rerun":
        first, second = again.stdout.splitlines()[:2]
        assert first == "rerunning 1 instance(s) of bf"
        assert second.startswith("backfill bf: 1 success; 1 row(s) in "), again.stdout
    else:
        assert again.stdout.splitlines()[0] == "resuming 2 instance(s) of bf"
        assert "2 success" in again.stdout
