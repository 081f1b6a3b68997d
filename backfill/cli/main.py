"""Entry point of the `backfill` command."""

from __future__ import annotations

import os

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
    """Commands whose modules are imported lazily keep `validate` and `plan` free of Prefect."""
    from . import plan

    plan.register(app)
    try:
        from . import apply, instances, ops, status

        for module in (apply, instances, ops, status):
            module.register(app)  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - during development only some commands exist
        pass
    try:
        from . import diff

        diff.register(app)
    except ImportError:  # pragma: no cover
        pass


def run() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    _register_optional()
    app()


if __name__ == "__main__":
    run()
