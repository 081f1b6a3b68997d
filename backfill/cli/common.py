"""What every command shares: --project, --json, and how errors reach the user."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ..errors import SpecErrors, UserError

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="project folder (default: . or ./specs)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def project_root(given: Path | None) -> Path:
    from ..spec.loader import find_project_root

    return find_project_root(given)


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def fail(message: str, as_json: bool = False) -> NoReturn:
    if as_json:
        emit_json({"ok": False, "errors": [{"message": message}]})
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(1)


@contextmanager
def user_errors(as_json: bool = False, show_detail: bool = True) -> Iterator[None]:
    """Spec and user errors become `error:` lines on stderr and exit code 1."""
    try:
        yield
    except SpecErrors as exc:
        if as_json:
            emit_json({"ok": False, "errors": [e.to_json() for e in exc.errors]})
        for e in exc.errors:
            print(e.one_line(), file=sys.stderr)
            if show_detail and e.detail and not as_json:
                print("\n".join("    " + line for line in e.detail.splitlines()), file=sys.stderr)
        n = len(exc.errors)
        print(f"{n} error{'s' if n != 1 else ''} found", file=sys.stderr)
        raise typer.Exit(1) from None
    except UserError as exc:
        fail(str(exc), as_json)
