"""`backfill status`: a calendar heat map of current, stale and missing partitions, from the ledger."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import date
from itertools import groupby
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import JsonOpt, ProjectOpt, project_root, user_errors

if TYPE_CHECKING:
    from rich.text import Text

    from ..plan.status import StatusReport, TableStatus

__all__ = ["register", "render_text", "status_json"]

CELLS = {"current": ("█", "green"), "stale": ("▒", "yellow"), "missing": ("·", "red")}
_WORST = {"missing": 2, "stale": 1, "current": 0}
_DAYS = [f"{d:02d}" for d in range(1, 32)]


def _parse_day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"give a date as YYYY-MM-DD, not '{value}'", param_hint=option) from None


def _ruler() -> str:
    """Day numbers over the 31 day columns: 1 at column 1, then every fifth day."""
    cells = [" "] * 31
    for day in (1, 5, 10, 15, 20, 25, 30):
        for i, ch in enumerate(str(day)):
            cells[day - 1 + i - (len(str(day)) - 1)] = ch
    return "".join(cells)


def _months(t: TableStatus) -> dict[str, dict[str, str]]:
    """YYYY-MM -> day (DD) -> state of that day (an hourly table's day shows its worst hour)."""
    out: dict[str, dict[str, str]] = {}
    if not t.hourly:
        for ds, state in t.dates.items():
            out.setdefault(ds[:7], {})[ds[8:10]] = state
        return out
    for ds, state in t.dates.items():
        month = out.setdefault(ds[:7], {})
        seen = month.get(ds[8:10])
        if seen is None or _WORST[state] > _WORST[seen]:
            month[ds[8:10]] = state
    return out


def _counts(n: Mapping[str, int]) -> Text:
    from rich.text import Text

    text = Text(f"{n['expected']:>4} expected  ")
    for state, (_, style) in CELLS.items():
        text.append(f"{n[state]:>4} {state}", style=style if n[state] else "dim")
        text.append("  ")
    text.rstrip()
    return text


def _table_counts(t: TableStatus) -> dict[str, int]:
    return {"expected": len(t.dates), **{s: t.count(s) for s in ("current", "stale", "missing")}}


def render_text(report: StatusReport) -> list[Text]:
    from rich.text import Text

    width = max([len(t.table) for t in report.tables] + [5])
    lines: list[Text] = []
    where = report.ledger or "no ledger yet: nothing has run"
    lines.append(Text(f"Partitions of {report.project} per table and data timestamp ({where})", style="bold"))
    legend = Text("")
    for state, (ch, style) in CELLS.items():
        legend.append(ch, style=style)
        legend.append(f" {state}   ")
    legend.append("(blank: not expected)", style="dim")
    lines.append(legend)
    lines.append(Text(""))
    lines.append(Text(f"{'':<{width}}  {'month':<7}  {_ruler()}", style="dim"))
    for t in report.tables:
        head = Text(f"{t.table:<{width}}", style="bold")
        head.append("  ")
        head.append(_counts(_table_counts(t)))
        if t.hourly:
            head.append("  (hourly: a day shows its worst hour)", style="dim")
        lines.append(head)
        for month, days in _months(t).items():
            row = Text(f"{'':<{width}}  {month:<7}  ")
            for cell, run in groupby(days.get(day) for day in _DAYS[:int(max(days))]):
                ch, style = CELLS[cell] if cell is not None else (" ", "")
                row.append(ch * len(list(run)), style=style)  # one styled run per stretch of equal cells
            lines.append(row)
        if not t.dates:
            lines.append(Text(f"{'':<{width}}  no partition expected or recorded", style="dim"))
    lines.append(Text(""))
    total = Text(f"{len(report.tables)} table(s):".ljust(width + 2))
    total.append(_counts(report.totals))
    lines.append(total)
    if report.totals.get("stale") or report.totals.get("missing"):
        lines.append(Text("`backfill plan` shows what apply would run; stale = its template, fields or engine "
                          "changed since the partition was written", style="dim"))
    if report.undeclared:
        lines.append(Text("the ledger also records partitions of tables no spec declares any more: "
                          + ", ".join(report.undeclared), style="dim"))
    return lines


def status_json(doc: dict[str, Any]) -> str:
    """Deterministic JSON, one table per line: the C encoder keeps 100,000 dates fast (indent would not)."""
    def dump(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    tables = ",\n".join("    " + dump(t) for t in doc["tables"])
    rest = "".join(f',\n  {dump(k)}: {dump(v)}' for k, v in sorted(doc.items()) if k != "tables")
    return "{\n  \"tables\": [\n" + tables + ("\n  ]" if tables else "]") + rest + "\n}\n"


def register(app: typer.Typer) -> None:
    @app.command("status", help="Which partitions are current, stale (older SQL) or missing, per table and "
                                "date, from the ledger.")
    def status(
        table: Annotated[str | None, typer.Argument(help="one table (default: every table)")] = None,
        project: ProjectOpt = None,
        since: Annotated[str | None, typer.Option("--from", help="first data timestamp shown, YYYY-MM-DD")] = None,
        until: Annotated[str | None, typer.Option("--to", help="last data timestamp shown, YYYY-MM-DD")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        from ..plan.status import project_status

        start, end = _parse_day(since, "--from"), _parse_day(until, "--to")
        root = project_root(project)
        with user_errors(as_json):
            report = project_status(root, table, start, end)
        if as_json:
            sys.stdout.write(status_json(report.to_json()))
            return
        from rich.console import Console
        from rich.text import Text

        console = Console(highlight=False, soft_wrap=True)
        console.print(Text("\n").join(render_text(report)))
