"""What the scheduler keeps per instance (`Job`), what running one returns (`Outcome`), and the
statuses that end an instance."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..state.ledger import InstanceRow
from .engines.base import CancelToken

__all__ = ["BAD", "ENDED", "GroupProgress", "Job", "Outcome", "one_line"]

BAD = ("failed", "paused", "blocked", "killed")
ENDED = ("success", "dry_run", *BAD)


@dataclass
class GroupProgress:
    total: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0


@dataclass
class Outcome:
    status: str
    rows: int | None = None
    error: str | None = None
    ended_at: float = field(default_factory=time.time)  # taken by the worker, before it frees its slot
    adopted: bool = False  # another runner executed it: its outcome was read from the ledger
    attempt: Mapping[str, object] | None = None  # the last attempt's record, written with the outcome


@dataclass(eq=False)  # a job is itself: removing one from a group's list compares identities, not rows
class Job:
    row: InstanceRow
    status: str = "waiting"
    token: CancelToken = field(default_factory=CancelToken)
    reserved: bool = False  # claimed for this runner before its turn (`reserve`): no claim when it starts


def one_line(exc: BaseException) -> str:
    """An exception as the one line an instance's error shows."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:2000]
