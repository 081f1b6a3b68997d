"""Entry point of the `backfill` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from . import init, validate
from .common import OneLineErrors

app = typer.Typer(
    name="backfill",
    cls=OneLineErrors,
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


def _prestart(argv: list[str]) -> None:
    """`apply` boots the temporary Prefect server (or, against a standing server, spawns its reporter
    process) first thing: it needs seconds of CPU, the apply waits for it only at its end
    (run/reporting.py), and this is 0.3 s before the imports allow."""
    if len(argv) < 2 or argv[1] != "apply" or any(a.startswith(("--work-pool", "--help")) for a in argv):
        return
    given = next((b for a, b in zip(argv, argv[1:], strict=False) if a in ("--project", "-p")), None)
    given = next((a.split("=", 1)[1] for a in argv if a.startswith("--project=")), given)
    if given is not None:
        root = Path(given)
    else:
        root = Path.cwd() if (Path.cwd() / "project.yaml").is_file() else Path.cwd() / "specs"
    from ..run import ownreporter, tempserver

    tempserver.prestart(root)  # without PREFECT_API_URL
    ownreporter.prestart(root)  # with it


def run() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    _prestart(sys.argv)
    from .common import capture_library_output

    capture_library_output()
    _register_optional()
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    finally:
        from ..run import ownreporter, tempserver

        tempserver.discard_unadopted()
        ownreporter.discard_untaken()
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
