"""The dates of a backfill: its intervals expanded to days or hours, and split into groups."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from ..spec.model import DateInterval

__all__ = ["MAX_INSTANCES", "count_timestamps", "expand_timestamps", "split_groups"]

MAX_INSTANCES = 200_000  # one backfill's instances: planning stays within seconds and a few hundred MB


def count_timestamps(intervals: Iterable[DateInterval], hourly: bool) -> int:
    """How many timestamps the intervals hold at most (overlaps counted twice), without expanding them."""
    total = 0
    for iv in intervals:
        days = (iv.end.date() - iv.start.date()).days + 1
        if not hourly:
            total += days
            continue
        first = iv.start.hour if iv.start_names_hour else 0
        last = iv.end.hour if iv.end_names_hour else 23
        total += days * 24 - first - (23 - last)
    return total


def expand_timestamps(intervals: Iterable[DateInterval], hourly: bool) -> list[datetime]:
    out: set[datetime] = set()
    for iv in intervals:
        if hourly:
            start = iv.start if iv.start_names_hour else datetime.combine(iv.start.date(), datetime.min.time())
            end = iv.end if iv.end_names_hour else \
                datetime.combine(iv.end.date(), datetime.min.time()) + timedelta(hours=23)
            step = timedelta(hours=1)
        else:
            start = datetime.combine(iv.start.date(), datetime.min.time())
            end = datetime.combine(iv.end.date(), datetime.min.time())
            step = timedelta(days=1)
        t = start
        while t <= end:
            out.add(t)
            t += step
    return sorted(out)


def split_groups(days: list[date], groups: int) -> list[list[date]]:
    """Consecutive chunks: 10 days in 3 groups -> 4/3/3; 3 days in 5 groups -> 3 groups of 1."""
    n = min(groups, len(days))
    if n == 0:
        return []
    size, extra = divmod(len(days), n)
    out, start = [], 0
    for g in range(n):
        end = start + size + (1 if g < extra else 0)
        out.append(days[start:end])
        start = end
    return out
