"""Data timestamps in spec files: `YYYY-MM-DD` or an hour, alone or as `{start, end}` intervals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import SpecError
from .model import DateInterval
from .yamlpos import Located

__all__ = ["LAST_YEAR", "MAX_DAYS", "parse_timestamp", "read_intervals"]

LAST_YEAR = 9998  # the last year a data timestamp may name: date arithmetic around it stays in range
MAX_DAYS = 36_600  # the days one backfill may cover: planning stays within seconds and memory


def parse_timestamp(text: str) -> tuple[datetime, bool]:
    """A data timestamp `YYYY-MM-DD` or `YYYY-MM-DDTHH[:00[:00]]` -> (datetime, names an hour)."""
    text = text.strip().replace(" ", "T")
    if "T" in text:
        day, hour = text.split("T", 1)
        return datetime.fromisoformat(f"{day}T{hour[:2]}:00:00"), True
    return datetime.fromisoformat(text), False


def read_intervals(doc: Located, raw: Any, errors: list[SpecError]) -> tuple[DateInterval, ...] | None:
    """A backfill's `data_timestamp` (None: not given); each problem goes to `errors` at its position."""
    if raw is None:
        return None
    items = raw if isinstance(raw, list) else [raw]
    base: tuple[str | int, ...] = ("data_timestamp",)
    out = []
    for i, item in enumerate(items):
        at = base + (i,) if isinstance(raw, list) else base
        if isinstance(item, str):
            ts = _timestamp(doc, at, item, errors)
            if ts:
                out.append(DateInterval(ts[0], ts[0], ts[1]))
            continue
        start = _timestamp(doc, at + ("start",), item["start"], errors)
        end = _timestamp(doc, at + ("end",), item["end"], errors)
        if start is None or end is None:
            continue
        if end[0] < start[0]:
            errors.append(doc.error(at + ("end",), f"interval ends ({item['end']}) before it starts "
                                    f"({item['start']}); swap start and end"))
            continue
        out.append(DateInterval(start[0], end[0], start[1] and end[1], start_hour=start[1], end_hour=end[1]))
    days = sum((iv.end.date() - iv.start.date()).days + 1 for iv in out)
    if days > MAX_DAYS:
        errors.append(doc.error(base, f"covers {days:,} days; one backfill covers at most "
                                f"{MAX_DAYS:,} (100 years): split it into several backfills"))
    return tuple(out)


def _timestamp(doc: Located, at: tuple[str | int, ...], text: str,
               errors: list[SpecError]) -> tuple[datetime, bool] | None:
    try:
        found = parse_timestamp(text)
    except ValueError as exc:
        errors.append(doc.error(at, f"'{text}' is not a real date or hour: {exc}"))
        return None
    if found[0].year > LAST_YEAR:
        errors.append(doc.error(at, f"'{text}' is out of range: data timestamps run from 0001-01-01 "
                                f"to {LAST_YEAR}-12-31"))
        return None
    return found
