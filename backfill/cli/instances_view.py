"""The Data Backfill Instances page as text lines that fit a terminal's width (80 columns and up).

Ids are shown relative to their backfill (`TABLE/DS`), errors on a line of their own, cut to the
width with a pointer to `backfill logs`; by date, one line per data timestamp with its rolled-up
status and counts. Pure: rows in, lines out; `instances.py` reads the ledger and prints.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..run.operations import rollup
from ..state.ledger import Ledger
from ..state.pages import DateCount, PageRow, date_counts, page_rows, status_counts

__all__ = ["MIN_WIDTH", "Snapshot", "View", "backfill_lines", "by_date", "by_date_lines", "counts_text"]

MIN_WIDTH = 60  # below this, lines may be wider than the terminal
CUT = "… see logs"


def counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in sorted(counts))


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False) or [""]


def _cut(text: str, width: int, tail: str = "…") -> tuple[str, bool]:
    text = " ".join(text.split())
    if len(text) <= width:
        return text, False
    return text[:max(width - len(tail), 0)].rstrip() + tail, True


def _clock(ts: float | None, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(ts)) if ts else "-"


def _duration(d: float | None) -> str:
    if d is None:
        return "-"
    if d < 60:
        return f"{d:.2f}s"
    if d < 3600:
        return f"{int(d // 60)}m{int(d % 60):02d}s"
    return f"{int(d // 3600)}h{int(d % 3600 // 60):02d}m"


def _title(name: str, counts: Mapping[str, int], width: int) -> list[str]:
    return _wrap(f"{name}: {rollup(counts)} ({counts_text(counts)})", width)


def backfill_lines(name: str, rows: Sequence[PageRow], counts: Mapping[str, int], width: int) -> list[str]:
    """One backfill: a title with its rolled-up status, then one line per instance (and its error)."""
    width = max(width, MIN_WIDTH)
    lines = _title(name, counts, width)
    prefix = f"{name}/"
    cells = [(r.id.removeprefix(prefix), str(r.group), r.status, _clock(r.started_at, "%m-%d %H:%M:%S"),
              _clock(r.ended_at, "%H:%M:%S"), _duration(r.duration), "-" if r.rows is None else str(r.rows))
             for r in rows]
    head = ("instance", "grp", "status", "start", "end", "time", "rows")
    w = [max(len(head[k]), *(len(c[k]) for c in cells)) if cells else len(head[k]) for k in range(7)]
    rest = sum(w[1:]) + 6  # one space between the other columns
    w[0] = min(w[0], max(width - rest - 2, 12))

    def line(c: Sequence[str]) -> str:
        ident = c[0] if len(c[0]) <= w[0] else c[0][:w[0] - 1] + "…"
        return (f"{ident:<{w[0]}}  {c[1]:>{w[1]}} {c[2]:<{w[2]}} {c[3]:<{w[3]}} {c[4]:<{w[4]}} "
                f"{c[5]:>{w[5]}} {c[6]:>{w[6]}}").rstrip()

    lines.append(line(head))
    cut_any = False
    for r, c in zip(rows, cells, strict=True):
        lines.append(line(c))
        if r.error:
            text, cut = _cut(r.error.replace(prefix, ""), width - 4, CUT)
            cut_any |= cut
            lines.append(f"    {text}")
    if cut_any:
        lines += _wrap(f"cut errors: `backfill logs {name}/TABLE/DS` shows them whole", width)
    return lines


def by_date(found: Sequence[DateCount]) -> list[dict[str, Any]]:
    """Per data timestamp of one backfill: rolled-up status, counts, first start and last end."""
    days: dict[str, list[DateCount]] = {}
    for d in found:
        days.setdefault(d.ds, []).append(d)
    out = []
    for ds in sorted(days):
        counts = {d.status: d.count for d in days[ds]}
        status = rollup(counts)
        starts = [d.started_at for d in days[ds] if d.started_at]
        ends = [d.ended_at for d in days[ds] if d.ended_at]
        out.append({"ds": ds, "status": status, "instances": sum(counts.values()),
                    "counts": dict(sorted(counts.items())),
                    "started_at": min(starts) if starts else None,
                    "ended_at": max(ends) if ends and status in ("success", "failed") else None})
    return out


def by_date_lines(name: str, found: Sequence[DateCount], counts: Mapping[str, int], width: int) -> list[str]:
    """One backfill by data timestamp: the "Data Backfill Name - Data Timestamp" rows."""
    width = max(width, MIN_WIDTH)
    lines = _title(name, counts, width)
    days = by_date(found)
    wds = max([2, *(len(d["ds"]) for d in days)])
    lines.append(f"{'ds':<{wds}}  {'status':<7} {'start':<14} {'time':>6} {'n':>3}  counts")
    for d in days:
        text = counts_text(d["counts"])
        span = d["ended_at"] - d["started_at"] if d["ended_at"] and d["started_at"] else None
        left = (f"{d['ds']:<{wds}}  {d['status']:<7} {_clock(d['started_at'], '%m-%d %H:%M:%S'):<14} "
                f"{_duration(span):>6} {d['instances']:>3}  ")
        lines.append(left + _cut(text, width - len(left))[0])
    return lines


@dataclass(frozen=True)
class Snapshot:
    text: str  # what is printed: human lines or a JSON document
    rollups: dict[str, str]  # backfill -> rolled-up status


@dataclass(frozen=True)
class View:
    """What `backfill instances` shows, read from the ledger each time (`--watch` reads it every second)."""

    backfill: str | None = None
    status: str | None = None
    ds: str | None = None
    by_date: bool = False
    as_json: bool = False

    def snapshot(self, ledger: Ledger, width: int | None = None) -> Snapshot:
        from ..errors import UserError

        width = width or shutil.get_terminal_size((80, 24)).columns
        counts = status_counts(ledger, self.backfill)
        if self.backfill and not counts:
            raise UserError(f"no backfill '{self.backfill}' in the ledger")
        rollups = {name: rollup(c) for name, c in counts.items()}
        shown: dict[str, list[Any]] = {}
        found: Sequence[DateCount | PageRow] = (
            date_counts(ledger, self.backfill, self.status, self.ds) if self.by_date
            else page_rows(ledger, self.backfill, self.status, self.ds))
        for r in found:
            shown.setdefault(r.backfill, []).append(r)
        if self.as_json:
            return Snapshot(json.dumps({"backfills": [self._json(name, items, counts[name], rollups[name])
                                                      for name, items in shown.items()]},
                                       indent=2, sort_keys=True), rollups)
        lines: list[str] = [] if found else ["no instances match"]
        for name, items in shown.items():
            if lines:
                lines.append("")
            lines += by_date_lines(name, items, counts[name], width) if self.by_date else \
                backfill_lines(name, items, counts[name], width)
        return Snapshot("\n".join(lines), rollups)

    def _json(self, name: str, items: Sequence[Any], counts: Mapping[str, int], status: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": name, "status": status, "counts": dict(counts)}
        if self.by_date:
            doc["dates"] = by_date(items)
        else:
            doc["instances"] = [
                {"id": r.id, "table": r.table, "ds": r.ds, "group": r.group, "status": r.status, "mode": r.mode,
                 "started_at": r.started_at, "ended_at": r.ended_at, "duration": r.duration, "rows": r.rows,
                 "attempts": r.attempts, "error": r.error} for r in items]
        return doc
