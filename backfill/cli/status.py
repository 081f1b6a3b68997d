"""`backfill status`: a calendar heat map of current, stale and missing partitions, from the ledger."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer

from .common import JsonOpt, ProjectOpt, emit_json, project_root, user_errors

if TYPE_CHECKING:
    from rich.text import Text

    from ..status import StatusReport, TableStatus

__all__ = ["register", "render_text"]

CELLS = {"current": ("█", "green"), "stale": ("▒", "yellow"), "missing": ("·", "red")}
_WORST = {"missing": 2, "stale": 1, "current": 0}


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


def _months(t: TableStatus) -> dict[str, dict[int, str]]:
    """YYYY-MM -> day -> state of that day (an hourly table's day shows its worst hour)."""
    out: dict[str, dict[int, str]] = defaultdict(dict)
    for ds, state in t.dates.items():
        month, day = ds[:7], int(ds[8:10])
        seen = out[month].get(day)
        if seen is None or _WORST[state] > _WORST[seen]:
            out[month][day] = state
    return dict(sorted(out.items()))


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
            for day in range(1, 32):
                if day in days:
                    ch, style = CELLS[days[day]]
                    row.append(ch, style=style)
                else:
                    row.append(" ")
            row.rstrip()
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
        from ..status import project_status

        start, end = _parse_day(since, "--from"), _parse_day(until, "--to")
        root = project_root(project)
        with user_errors(as_json):
            report = project_status(root, table, start, end)
        if as_json:
            emit_json(report.to_json())
            return
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        for line in render_text(report):
            console.print(line)
