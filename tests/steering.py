"""Helpers the end-to-end tests of steering (operations, monitoring, scheduling, retries) share."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from pathlib import Path

from typer.testing import CliRunner, Result

from backfill.cli import main as cli_main

if not any(c.name == "instances" for c in cli_main.app.registered_commands):
    cli_main._register_optional()

INTEGRATION = "data_timestamp: {start: 2026-06-25, end: 2026-07-14}"
LOGICAL = "data_timestamp: {start: 2026-07-01, end: 2026-07-14}"


def cli(project: Path, *args: str) -> Result:
    """The real command line, in this process."""
    return CliRunner().invoke(cli_main.app, [*args, "--project", str(project)])


def edit(path: Path, old: str, new: str) -> None:
    """Replace text that must stand exactly once in a spec or template."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {path}"
    path.write_text(text.replace(old, new))


def dates(project: Path, spec: str, start: str, end: str) -> None:
    """Narrow a tutorial backfill to start..end (fewer instances: a faster test)."""
    old = INTEGRATION if spec == "integration" else LOGICAL
    edit(project / "backfills" / f"{spec}.yaml", old, f"data_timestamp: {{start: {start}, end: {end}}}")


def statuses(project: Path) -> dict[str, str]:
    """Instance statuses read straight from the SQLite ledger ({} while it does not exist yet)."""
    state = project / ".backfill" / "state.db"
    if not state.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)
        try:
            return dict(con.execute("SELECT id, status FROM bf_instances").fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        return {}


def open_when_read(fifo: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> int:
    """The FIFO's write end, opened once the apply has it open for reading (held open: the read never ends)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
