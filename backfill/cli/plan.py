"""`backfill plan`: what apply would do, instance by instance, against the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .common import JsonOpt, ProjectOpt, project_root, usage_error, user_errors


def register(app: typer.Typer) -> None:
    @app.command("plan", help="Show what apply would do: new, stale, failed and done instances.")
    def plan(
        backfills: Annotated[list[str] | None, typer.Argument(help="backfill names (default: all)")] = None,
        project: ProjectOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="text, json or markdown")] = "text",
        out: Annotated[Path | None, typer.Option("--out", help="save the plan for `apply FILE`")] = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list every instance")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        from ..plan.explain import plan_to_json, plan_to_markdown, plan_to_text
        from ..plan.workspace import build_plans

        if as_json:
            fmt = "json"
        if fmt not in ("text", "json", "markdown"):
            raise typer.BadParameter(f"must be text, json or markdown, not '{fmt}'", param_hint="--format")
        if out is not None and out.is_dir():
            usage_error(f"--out {out} is a folder; give a file name, e.g. {out / 'plan.json'}")
        if out is not None and not out.parent.is_dir():
            usage_error(f"--out {out}: the folder {out.parent} does not exist; create it or choose another")
        root = project_root(project)
        with user_errors(fmt == "json"):
            result = build_plans(root, backfills or None, with_state=out is not None)
            if out is not None:
                try:
                    result.save(out)
                except OSError as exc:
                    raise UserError(f"cannot write the plan to {out}: {exc.strerror or exc}") from None
        proj = result.validated.project
        allowed = list(proj.allow_functions)
        note = (f"functions allowed beyond the {proj.engine.dialect} allow-list (allow_functions in "
                f"project.yaml): {', '.join(allowed)}\n") if allowed else ""
        if fmt == "json":
            typer.echo(plan_to_json(result.plans, {"allow_functions": allowed} if allowed else None), nl=False)
        elif fmt == "markdown":
            typer.echo((f"> {note}\n" if note else "") + plan_to_markdown(result.plans), nl=False)
        else:
            typer.echo(note + plan_to_text(result.plans, verbose), nl=False)
        if fmt != "json":
            for m in result.missing:
                typer.echo(m.one_line())
        if out is not None and fmt != "json":
            typer.echo(f"saved plan to {out}; run `backfill apply {out}` to execute exactly this plan")
