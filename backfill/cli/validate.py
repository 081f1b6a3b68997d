"""`backfill validate`: schema, template, SQL and DAG checks of every spec."""

from __future__ import annotations

import time

import typer

from .common import JsonOpt, ProjectOpt, emit_json, project_root, user_errors


def register(app: typer.Typer) -> None:
    @app.command("validate", help="Check every spec: schema, templates, SQL, dependencies. Lists all errors.")
    def validate(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
        started = time.perf_counter()
        from ..plan.validate import validate_project

        root = project_root(project)
        with user_errors(as_json):
            v = validate_project(root)
        took = time.perf_counter() - started
        summary = {
            "ok": True, "project": v.project.name, "tables": len(v.project.tables),
            "backfills": len(v.plans), "instances": v.instance_count, "seconds": round(took, 3),
        }
        if as_json:
            emit_json(summary)
        else:
            typer.echo(f"ok: project {v.project.name}: {len(v.project.tables)} tables, {len(v.plans)} backfills, "
                       f"{v.instance_count} instances checked in {took:.2f}s")
