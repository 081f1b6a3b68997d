"""`backfill diff`: how the plans differ between two git revisions of the specs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, ProjectOpt, project_root, user_errors


def register(app: typer.Typer) -> None:
    @app.command("diff", help="Show how the plans differ between two git revisions of the specs "
                              "(+ added, - removed, ~ changed instances).")
    def diff(
        base: Annotated[str, typer.Option("--base", help="git revision to compare from (e.g. main, HEAD~1)")],
        head: Annotated[str | None, typer.Option("--head", help="git revision to compare to "
                                                 "(default: the working tree)")] = None,
        project: ProjectOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="text, json or markdown")] = "text",
        as_json: JsonOpt = False,
        exit_code: Annotated[bool, typer.Option("--exit-code",
                                                help="exit 2 if the plans differ, 0 if not")] = False,
    ) -> None:
        from ..plan.diffexplain import diff_to_json, diff_to_markdown, diff_to_text
        from ..plan.gitdiff import diff_project

        if as_json:
            fmt = "json"
        if fmt not in ("text", "json", "markdown"):
            raise typer.BadParameter(f"must be text, json or markdown, not '{fmt}'", param_hint="--format")
        root: Path = project_root(project)
        with user_errors(fmt == "json"):
            result = diff_project(root, base, head)
        render = {"json": diff_to_json, "markdown": diff_to_markdown, "text": diff_to_text}[fmt]
        typer.echo(render(result), nl=False)
        if exit_code and result.has_differences:
            raise typer.Exit(2)
