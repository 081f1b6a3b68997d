"""`backfill instances` (Data Backfill Instances) and `backfill logs INSTANCE`: read the ledger only."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UserError

if TYPE_CHECKING:  # the ledger (SQLAlchemy) loads only when a command reads it
    from ..state.ledger import Ledger
from .common import JsonOpt, ProjectOpt, emit_json, project_root, user_errors

# ledger.ACTIVE + ledger.FINISHED, spelled out: the ledger (SQLAlchemy) must not load at import
STATUSES = ("pending", "waiting", "running", "success", "dry_run", "failed", "paused", "blocked", "killed")


def _ledger(project: ProjectOpt) -> Ledger:
    from ..plan.workspace import open_ledger
    from ..spec.loader import load_project

    ledger = open_ledger(load_project(project_root(project)), create=False)
    if ledger is None:
        raise UserError("no ledger yet: nothing was applied in this project; run `backfill apply`")
    return ledger


def _real_ds(ds: str) -> bool:
    """A data timestamp that names a real day (or hour): YYYY-MM-DD or YYYY-MM-DDTHH."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T\d{2})?", ds):
        return False
    from datetime import datetime

    try:
        datetime.strptime(ds, "%Y-%m-%dT%H" if "T" in ds else "%Y-%m-%d")
    except ValueError:
        return False
    return True


def register(app: typer.Typer) -> None:
    @app.command("instances", help="Data Backfill Instances: per backfill, date and instance, with status, "
                                   "times, duration, rows and error; --by-date rolls them up per data "
                                   "timestamp; --watch redraws every second until the backfill ends.")
    def instances(
        backfill: Annotated[str | None, typer.Argument(help="one backfill (default: all)")] = None,
        status: Annotated[str | None, typer.Option("--status", help="only this status")] = None,
        ds: Annotated[str | None, typer.Option("--date", help="only this data timestamp (YYYY-MM-DD)")] = None,
        by_date: Annotated[bool, typer.Option("--by-date", help="one line per data timestamp: "
                                              "rolled-up status and counts")] = False,
        watch: Annotated[bool, typer.Option("--watch", help="redraw every second until the backfill "
                                            "ends (exit 1 if it ends failed)")] = False,
        project: ProjectOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        if status is not None and status not in STATUSES:
            raise typer.BadParameter(f"'{status}' is not a status; one of: {', '.join(STATUSES)}",
                                     param_hint="'--status'")
        if ds is not None and not _real_ds(ds):
            raise typer.BadParameter(f"'{ds}' is not a data timestamp YYYY-MM-DD (or YYYY-MM-DDTHH)",
                                     param_hint="'--date'")
        from .instances_view import View

        view = View(backfill, status, ds, by_date, as_json)
        with user_errors(as_json):
            ledger = _ledger(project)
            try:
                if watch:
                    from .watch import watch_instances

                    watch_instances(ledger, view)
                    return
                typer.echo(view.snapshot(ledger).text)
            except UserError as exc:  # a backfill recorded with no instance is not an unknown one
                if backfill and str(exc).startswith(f"no backfill '{backfill}'"):
                    from ..run.operations import empty_backfill

                    raise UserError(empty_backfill(ledger, backfill) or str(exc)) from None
                raise
            finally:
                ledger.close()

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
            if a["sql"] and a["sql"] != row.sql:  # it ran other SQL than the instance holds now
                typer.echo(f"--- SQL executed by attempt {a['number']}")
                typer.echo(a["sql"])
        if not attempts:
            typer.echo("--- SQL (as planned; never executed)")
        elif attempts[-1]["sql"] and attempts[-1]["sql"] != row.sql:
            typer.echo(f"--- SQL (as last planned; not what attempt {attempts[-1]['number']} executed, shown above)")
        else:
            typer.echo("--- SQL")
        typer.echo(row.sql)
