"""`backfill init DIR`: write the runnable retail tutorial project, with its source data."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from ..spec.resources import tutorial_dir
from .common import fail


def register(app: typer.Typer) -> None:
    @app.command("init", help="Write a runnable example project (the retail tutorial) into DIR.")
    def init(
        directory: Annotated[Path, typer.Argument(help="folder to create")],
        scale: Annotated[int, typer.Option(help="source data volume (1 = small)", min=1, max=10000)] = 1,
    ) -> None:
        from ..spec.tutorial import generate_source_data

        if directory.exists() and not directory.is_dir():
            fail(f"{directory} exists and is not a folder; choose a new folder")
        if directory.exists() and any(directory.iterdir()):
            fail(f"{directory} exists and is not empty; choose a new folder")
        src = tutorial_dir()
        try:
            shutil.copytree(src, directory, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".backfill", "data", "__pycache__"))
            counts = generate_source_data(directory, scale=scale)
        except (OSError, shutil.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            fail(f"cannot write the project into {directory}: {reason}; choose a folder you can write to")
        rows = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        typer.echo(f"wrote the retail tutorial project to {directory} (source rows {rows})")
        typer.echo(f"next: backfill plan --project {directory}")
