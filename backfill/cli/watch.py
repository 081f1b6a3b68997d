"""`backfill instances --watch`: redraw the instances page from the ledger every second until it ends.

It only reads the ledger (SQLite or PostgreSQL), so it works from any terminal while `apply`, `rerun`
or `resume` runs elsewhere. On a terminal the page is redrawn in place; into a pipe or file a page is
written each time it changes (`--json`: one JSON document per line). It ends when every backfill it
shows has ended (exit 1 if one ended failed), or when no apply has held the ledger's lock for a few
seconds while instances still wait (nothing would move them).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

import typer

from ..errors import UserError
from ..state.ledger import Ledger
from .instances_view import Snapshot, View

__all__ = ["watch_instances"]

INTERVAL = 1.0
IDLE_POLLS = 3  # polls in a row without a running apply before giving up on what still waits


def _wait_for_backfill(ledger: Ledger, view: View) -> None:
    """`--watch NAME` started before the running apply recorded NAME: wait for it while an apply runs."""
    idle = 0
    while view.backfill and not ledger.instances(backfill=view.backfill):
        holder = ledger.lock_holder()
        idle = 0 if holder and holder["alive"] else idle + 1
        if idle >= IDLE_POLLS:
            raise UserError(f"no backfill '{view.backfill}' in the ledger")
        time.sleep(INTERVAL)


def watch_instances(ledger: Ledger, view: View) -> None:
    try:
        _watch(ledger, view)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _watch(ledger: Ledger, view: View) -> None:
    _wait_for_backfill(ledger, view)
    tty = sys.stdout.isatty() and not view.as_json
    shown = ""
    idle = 0
    while True:
        snap = view.snapshot(ledger)
        ended = all(s in ("success", "failed") for s in snap.rollups.values())
        holder = None if ended else ledger.lock_holder()
        idle = 0 if ended or (holder and holder["alive"]) else idle + 1
        footer = _footer(snap, ended, idle)
        text = json.dumps(json.loads(snap.text), sort_keys=True) if view.as_json else snap.text
        if tty:  # redraw in place: home, each line cleared to its end, the rest of the screen cleared
            page = text + ("\n" + footer if footer else "")
            sys.stdout.write("\x1b[H" + "\n".join(line + "\x1b[K" for line in page.split("\n")) + "\n\x1b[J")
            sys.stdout.flush()
        elif text != shown:
            sys.stdout.write(text + "\n" if view.as_json else f"--- {time.strftime('%H:%M:%S')}\n{text}\n")
            sys.stdout.flush()
        shown = text
        if ended or idle >= IDLE_POLLS:
            break
        time.sleep(INTERVAL)
    if not view.as_json and not tty:
        sys.stdout.write(footer + "\n")
    failed = sorted(n for n, s in snap.rollups.items() if s == "failed")
    if failed:
        raise UserError(f"{', '.join(failed)} ended failed; `backfill why ID` explains an instance")
    if not ended:
        scheduled = sorted(b["name"] for b in ledger.backfills() if b["name"] in snap.rollups and b["runtime"]
                           and datetime.fromisoformat(b["runtime"]).timestamp() > time.time())
        if scheduled:
            raise UserError(f"scheduled for later: {', '.join(scheduled)}; `backfill serve` starts them when due")
        raise UserError("no apply is running and instances still wait: `backfill apply` runs them")


def _footer(snap: Snapshot, ended: bool, idle: int) -> str:
    if ended:
        return "ended: " + ", ".join(f"{n} {s}" for n, s in snap.rollups.items())
    if idle:
        return f"no apply running ({idle}/{IDLE_POLLS})"
    return f"watching {time.strftime('%H:%M:%S')}; Ctrl-C stops"
