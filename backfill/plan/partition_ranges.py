"""Partition ds texts (YYYY-MM-DD, or YYYY-MM-DDTHH for hourly tables) as compact inclusive ranges."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from ..sql.context import fmt_date

__all__ = ["expand", "ranges_of"]


def ranges_of(values: Sequence[str], hourly: bool) -> list[list[str]]:
    """Sorted ds texts as compact inclusive ranges of consecutive days (or hours)."""
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    out: list[list[str]] = []
    prev: datetime | None = None
    for ds in sorted(set(values)):
        at = datetime.fromisoformat(ds)
        if prev is not None and at - prev == step:
            out[-1][1] = ds
        else:
            out.append([ds, ds])
        prev = at
    return out


def expand(first: str, last: str) -> list[str]:
    hourly = "T" in first
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    at, end = datetime.fromisoformat(first), datetime.fromisoformat(last)
    out: list[str] = []
    while at <= end and len(out) <= 100_000:
        out.append(fmt_date(at, "%Y-%m-%dT%H" if hourly else "%Y-%m-%d"))
        at += step
    return out
