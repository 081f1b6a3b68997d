"""Entry point of the `backfill` command."""

from __future__ import annotations

import os
import sys

import typer

from . import init, validate

app = typer.Typer(
    name="backfill",
    help="Declarative, reviewable data backfills: validate, plan, apply, watch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (init, validate):
    module.register(app)


def _register_optional() -> None:
    """Command modules are imported here, not at the top, so `backfill --help` stays fast.
    None of them imports Prefect at module level: only `apply`, `rerun` and `resume` load it, when they run."""
    import importlib

    for name in ("plan", "apply", "instances", "ops", "why", "status", "diff", "show"):
        try:
            module = importlib.import_module(f"backfill.cli.{name}")
        except ModuleNotFoundError as exc:  # pragma: no cover - a command still in development
            if exc.name != f"backfill.cli.{name}":
                raise
            continue
        module.register(app)


def run() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from .common import capture_library_output

    capture_library_output()
    _register_optional()
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    if "prefect" not in sys.modules:
        sys.exit(code)
    # Prefect leaves service threads behind; stop its server and leave without waiting for them
    from ..run.flow import stop_temporary_server

    stop_temporary_server()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    run()
