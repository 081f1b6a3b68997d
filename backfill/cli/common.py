"""What every command shares: --project, --json, and how errors reach the user."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer._click import exceptions as click_errors
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from ..errors import SpecErrors, UserError

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="project folder (default: . or ./specs)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def project_root(given: Path | None) -> Path:
    """`--project DIR`, else the current directory if it holds project.yaml, else ./specs."""
    if given is not None:
        return given
    here = Path.cwd()
    if (here / "project.yaml").exists() or not (here / "specs" / "project.yaml").exists():
        return here
    return here / "specs"


class LibraryLog(logging.Handler):
    """Where the libraries' log records and Python warnings go instead of the terminal: the last few
    are kept in memory, and appended to the file BACKFILL_LIBRARY_LOG names, if set. Our own output is
    the `error:` line and the command's report; sqlglot's "contains unsupported syntax", Prefect's,
    SQLAlchemy's or DuckDB's warnings never come before it."""

    def __init__(self, keep: int = 200) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.keep = keep
        self.records: list[str] = []
        self.path = os.environ.get("BACKFILL_LIBRARY_LOG") or None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self.records = [*self.records[-(self.keep - 1):], line]
            if self.path:
                with open(self.path, "a", encoding="utf-8") as log:
                    log.write(line + "\n")
        except Exception:  # noqa: BLE001 - a log line must never break the command
            pass


def capture_library_output() -> LibraryLog:
    """Route library logging and Python warnings away from the terminal, for this process.

    Prefect configures its logging when imported: it keeps the root logger's handler (ours), and its
    own console handlers are raised to CRITICAL through its documented environment overrides."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, LibraryLog)), None)
    if handler is None:
        handler = LibraryLog()
        root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    for name in ("CONSOLE", "DEBUG"):
        os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{name}_LEVEL", "CRITICAL")
    return handler


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def usage_error(message: str) -> NoReturn:
    """A bad command-line value: one `error:` line, exit 2."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(2)


def click_error_line(exc: click_errors.ClickException) -> str:
    """Click's message about bad usage, as the one `error:` line: what is wrong; where to read more."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    words = ctx.command_path.split()[1:] if ctx is not None else []
    return f"error: {message}; see `{' '.join(['backfill', *words, '--help'])}`"


class OneLineErrors(TyperGroup):
    """The command group: bad usage Click finds (an unknown option, a bad value, a missing argument)
    is one `error:` line with exit 2, like `usage_error`, not Click's usage box; --help is unchanged."""

    def make_context(self, info_name: str | None, args: list[str], parent: ClickContext | None = None,
                     **extra: Any) -> ClickContext:
        with _one_line_click_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: ClickContext) -> Any:
        with _one_line_click_errors():
            return super().invoke(ctx)


@contextmanager
def _one_line_click_errors() -> Iterator[None]:
    try:
        yield
    except click_errors.NoArgsIsHelpError:
        raise  # `backfill` alone prints the help
    except click_errors.ClickException as exc:
        print(click_error_line(exc), file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None


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
