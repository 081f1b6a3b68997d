"""Waiting, untimed, until the background work of an earlier measured run has ended."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["wait_for_quiet"]


def wait_for_quiet(folder: Path, seconds: float = 120) -> None:
    """Until no process works under `folder` any more (a temporary Prefect server records the last
    run after its apply returned), so one measurement's background work never slows the next."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    busy = busy or Path(os.readlink(entry / "cwd")).is_relative_to(folder)
                except OSError:
                    continue
        if not busy:
            return
        time.sleep(0.2)
