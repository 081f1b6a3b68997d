"""`backfill instances` (Data Backfill Instances) and `backfill logs INSTANCE`: read the ledger only."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UserError

if TYPE_CHECKING:  # the ledger (SQLAlchemy) loads only when a command reads it
    from ..state.ledger import InstanceRow, Ledger
from .common import JsonOpt, ProjectOpt, emit_json, project_root, user_errors

# ledger.ACTIVE + ledger.FINISHED, spelled out: the ledger (SQLAlchemy) must not load at import
STATUSES = ("pending", "waiting", "running", "success", "dry_run", "failed", "paused", "blocked", "killed")


def _clock(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _ledger(project: ProjectOpt) -> Ledger:
    from ..plan.workspace import open_ledger
    from ..spec.loader import load_project

    ledger = open_ledger(load_project(project_root(project)), create=False)
    if ledger is None:
        raise UserError("no ledger yet: nothing was applied in this project; run `backfill apply`")
    return ledger


def register(app: typer.Typer) -> None:
    @app.command("instances", help="Data Backfill Instances: per backfill, date and instance, with status, "
                                   "times, duration, rows and error.")
    def instances(
        backfill: Annotated[str | None, typer.Argument(help="one backfill (default: all)")] = None,
        status: Annotated[str | None, typer.Option("--status", help="only this status")] = None,
        ds: Annotated[str | None, typer.Option("--date", help="only this data timestamp (YYYY-MM-DD)")] = None,
        project: ProjectOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from ..run.operations import rollup

        if status is not None and status not in STATUSES:
            raise typer.BadParameter(f"'{status}' is not a status; one of: {', '.join(STATUSES)}",
                                     param_hint="'--status'")
        if ds is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T\d{2})?", ds):
            raise typer.BadParameter(f"'{ds}' is not a data timestamp YYYY-MM-DD (or YYYY-MM-DDTHH)",
                                     param_hint="'--date'")
        with user_errors(as_json):
            ledger = _ledger(project)
            rows = ledger.instances(backfill=backfill, status=status, ds=ds)
            every = ledger.instances(backfill=backfill)
            if backfill and not every:
                raise UserError(f"no backfill '{backfill}' in the ledger")
        by_backfill: dict[str, list[InstanceRow]] = {}
        for r in rows:
            by_backfill.setdefault(r.backfill, []).append(r)
        rolled: dict[str, list[str]] = {}
        for r in every:
            rolled.setdefault(r.backfill, []).append(r.status)
        if as_json:
            emit_json({"backfills": [
                {"name": name, "status": rollup(rolled.get(name, [])), "instances": [
                    {"id": r.id, "table": r.table, "ds": r.ds, "group": r.group, "status": r.status,
                     "mode": r.mode, "started_at": r.started_at, "ended_at": r.ended_at,
                     "duration": r.duration, "rows": r.rows, "attempts": r.attempts, "error": r.error}
                    for r in insts]} for name, insts in by_backfill.items()]})
            return
        from rich.console import Console
        from rich.table import Table

        console = Console(width=max(Console().width, 120))
        if not rows:
            console.print("no instances match")
        for name, insts in by_backfill.items():
            statuses = rolled.get(name, [])
            counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
            t = Table(title=f"{name}: {rollup(statuses)} ({counts})", title_justify="left")
            for col in ("instance", "group", "status", "start", "end", "duration", "rows", "error"):
                t.add_column(col, justify="right" if col in ("group", "duration", "rows") else "left",
                             overflow="fold")
            for r in insts:
                d = r.duration
                t.add_row(f"{r.table}/{r.ds}", str(r.group), r.status, _clock(r.started_at),
                          _clock(r.ended_at), f"{d:.2f}s" if d is not None else "-",
                          "-" if r.rows is None else str(r.rows), (r.error or "")[:80])
            console.print(t)

    @app.command("logs", help="An instance's attempts: log and executed SQL.")
    def logs(
        instance: Annotated[str, typer.Argument(help="BACKFILL/TABLE/DS")],
        project: ProjectOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        with user_errors(as_json):
            ledger = _ledger(project)
            row = ledger.instance(instance)
            if row is None:
                raise UserError(f"no instance '{instance}'; list them with `backfill instances`")
            attempts = ledger.attempts(instance)
        if as_json:
            emit_json({"id": row.id, "status": row.status, "sql": row.sql, "attempts": attempts})
            return
        typer.echo(f"{row.id}: {row.status}" + (f" ({row.error})" if row.error else ""))
        if not attempts:
            typer.echo("no attempt yet")
        for a in attempts:
            typer.echo(f"--- attempt {a['number']}: {a['status']}, pid {a['pid']} on {a['host']}")
            typer.echo(a["log"] or "")
        typer.echo("--- SQL")
        typer.echo(row.sql)
