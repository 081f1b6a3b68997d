"""The reporter process of an apply against a standing Prefect server (PREFECT_API_URL names it).

It imports Prefect (about 1 s) and the apply waits for it at its end, so `backfill apply` spawns it
first thing (`prestart`, from cli/main.py, before the CLI imports its own stack): its import then
overlaps ours, instead of starting 0.3 s later. reporting.py takes it over (`take`) or spawns one
(`spawn`); one no apply took is stopped when the command ends (`discard_untaken`).

Its log goes to the project's `.backfill/`; a first apply's prestart makes that folder, and a first
apply that is refused removes it again (`made_folder`, as the temporary server's). Standard library
only: importing this costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["discard_untaken", "log_path", "made_folder", "prestart", "spawn", "take"]

_PRESTARTED: dict[Path, subprocess.Popen[bytes]] = {}
_MADE: set[Path] = set()  # projects whose `.backfill/` a prestart made


def log_path(root: Path) -> Path:
    return root / ".backfill" / "prefect-reporter.log"


def spawn(root: Path) -> subprocess.Popen[bytes]:
    """A reporter process for the standing server PREFECT_API_URL names: the stream goes to its stdin."""
    wait = os.environ.get("BACKFILL_PREFECT_WAIT")
    env = {"PREFECT_API_URL": os.environ["PREFECT_API_URL"], "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
           "BACKFILL_PREFECT_WAIT": wait or "30"}
    log = log_path(root)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        # its own session: a Ctrl-C in the terminal reaches the apply, which then reports the end
        return subprocess.Popen([sys.executable, "-m", "backfill.run.reporter_child"], env={**os.environ, **env},
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, start_new_session=True)


def prestart(root: Path) -> None:
    if not (os.environ.get("PREFECT_API_URL") and (root / "project.yaml").is_file()):
        return
    made = not (root / ".backfill").exists()
    try:
        process = spawn(root)
    except OSError:  # a folder that cannot be written: the apply spawns it later, and says what is wrong
        if made:
            shutil.rmtree(root / ".backfill", ignore_errors=True)
        return
    if made:
        _MADE.add(root.resolve())
    _PRESTARTED[root.resolve()] = process


def made_folder(root: Path) -> bool:
    """A prestart made the project's `.backfill/` (this command's first apply): a refused apply removes it."""
    return root.resolve() in _MADE


def take(root: Path) -> subprocess.Popen[bytes] | None:
    """The reporter `prestart` spawned for the project at `root`, if it is still alive (else None)."""
    process = _PRESTARTED.pop(root.resolve(), None)
    if process is not None and process.poll() is not None:
        return None
    return process


def discard_untaken() -> None:
    """Stop a prestarted reporter no apply took (the command ended before: bad usage, a refused plan)."""
    for root, process in _PRESTARTED.items():
        with contextlib.suppress(OSError):
            process.kill()
        process.wait()
        if root in _MADE:
            shutil.rmtree(root / ".backfill", ignore_errors=True)
    _PRESTARTED.clear()
