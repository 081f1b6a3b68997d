"""`backfill apply`: run what is missing, failed or stale, with a live progress bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .common import JsonOpt, ProjectOpt, emit_json, fail, project_root, user_errors
from .progress import LiveProgress


def register(app: typer.Typer) -> None:
    @app.command("apply", help="Make the warehouse match the committed specs: run missing, failed and stale "
                               "instances. BACKFILL names, or one saved PLANFILE.")
    def apply(
        targets: Annotated[list[str] | None, typer.Argument(help="backfill names, or a saved plan file")] = None,
        project: ProjectOpt = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
        lock_timeout: Annotated[float, typer.Option("--lock-timeout", help="seconds to wait for another apply")] = 0.0,
        work_pool: Annotated[str | None, typer.Option(
            "--work-pool", help="run each group as a flow run on this Prefect work pool's workers")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        from ..plan.explain import plan_to_text
        from ..run.apply import apply_project

        root = project_root(project)
        names = list(targets or [])
        plan_file = None
        if len(names) == 1 and Path(names[0]).is_file():
            plan_file = Path(names[0])
            names = []
        if not yes and plan_file is None and sys.stdin.isatty():
            from ..plan.workspace import build_plans

            with user_errors(as_json):
                preview = build_plans(root, names or None, with_state=False)
            typer.echo(plan_to_text(preview.plans), nl=False)
            if not typer.confirm("Apply this plan?", default=False):
                fail("apply cancelled; nothing was run")
        live = LiveProgress(enabled=not as_json and sys.stderr.isatty())
        with user_errors(as_json):
            try:
                report = apply_project(root, names, plan_file, lock_timeout,
                                       say=lambda m: typer.echo(m, err=True),
                                       on_change=live.on_change, before_run=live.start_backfill,
                                       work_pool=work_pool)
            except UserError:
                live.stop()
                raise
            finally:
                live.stop()
        if as_json:
            emit_json({
                "ok": report.ok, "nothing_to_do": report.nothing_to_do, "recovered": report.recovered,
                "deleted_specs": report.deleted_specs,
                "backfills": [{"name": b.name, "counts": b.counts, "rows": b.rows, "seconds": round(b.seconds, 3),
                               "scheduled_for": b.scheduled_for,
                               "failures": [{"id": i, "status": s, "error": e} for i, s, e in b.failures]}
                              for b in report.backfills]})
        else:
            for name in report.deleted_specs:
                typer.echo(f"note: backfill {name}: its spec file is gone from backfills/; "
                           f"its history stays in the ledger (see `backfill instances {name}`)")
            if report.recovered:
                typer.echo(f"recovered {len(report.recovered)} instance(s) left unfinished by a stopped apply")
            if report.nothing_to_do:
                typer.echo("Nothing to do: every instance is done and current.")
            for b in report.backfills:
                if b.scheduled_for:
                    typer.echo(f"backfill {b.name}: {b.counts.get('waiting', 0)} instance(s) waiting for "
                               f"{b.scheduled_for}; `backfill serve` starts it when due")
                    continue
                if not b.counts:
                    typer.echo(f"backfill {b.name}: nothing to do")
                    continue
                counts = ", ".join(f"{n} {s}" for s, n in sorted(b.counts.items()))
                typer.echo(f"backfill {b.name}: {counts}; {b.rows} row(s) in {b.seconds:.2f}s")
                for iid, status, error in b.failures:
                    typer.echo(f"  {status:<8} {iid}: {error}")
        if not report.ok:
            failed = sum(len(b.failures) for b in report.backfills)
            if not as_json:
                print(f"error: {failed} instance(s) did not succeed; see `backfill instances --status failed` "
                      "and `backfill logs INSTANCE`", file=sys.stderr)
            raise typer.Exit(1)
