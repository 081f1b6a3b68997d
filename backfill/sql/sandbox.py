"""The Jinja sandbox templates render in, and how its failures are located in the template."""

from __future__ import annotations

import re
import sys
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from . import dataphin
from .context import add_hours, add_months, date_format, ds_add
from .datefill import lift
from .quoting import finalize

__all__ = ["ENV", "TemplateFailure", "column_of", "describe", "sched_jinja", "template_line"]

class TemplateFailure(Exception):
    def __init__(self, message: str, line: int, col: int):
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, plus bounds on `*` and `**` so a template cannot exhaust memory or hang rendering."""

    intercepted_binops = frozenset({"*", "**"})
    _MAX_ITEMS = 100_000

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 100:
            raise jinja2.exceptions.SecurityError("exponent too large (at most 100)")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > self._MAX_ITEMS:
                    raise jinja2.exceptions.SecurityError(f"repetition too large (at most {self._MAX_ITEMS} items)")
        return super().call_binop(context, operator, left, right)


ENV = _BoundedSandbox(undefined=jinja2.StrictUndefined, finalize=finalize, autoescape=False,
                            keep_trailing_newline=True)
# `range` stays the sandbox's own, which refuses ranges of more than MAX_RANGE items
ENV.globals.update(ds_add=lift(ds_add), add_days=lift(ds_add), add_months=lift(add_months),
                    add_hours=lift(add_hours), date_format=lift(date_format))
QUOTED_PARAM = re.compile(r"""(['"])\s*\{\{\s*params\b[^}]*\}\}\s*\1""")


def sched_jinja(source: str) -> str:
    """Turn Dataphin/DataWorks scheduling parameters into calls the sandbox can evaluate per date."""
    params = dataphin.find_params(source)
    for p in reversed(params):
        source = source[: p.start] + "{{ __sched(" + repr(p.text) + ") }}" + source[p.end :]
    return source


def describe(exc: jinja2.TemplateError) -> str:
    from jinja2.exceptions import SecurityError, UndefinedError

    if isinstance(exc, SecurityError):
        return f"template tried something the sandbox forbids: {exc.message}"
    if isinstance(exc, UndefinedError):
        m = re.fullmatch(r"'dict object' has no attribute '([^']*)'", exc.message or "")
        if m:
            return f"undefined template variable: no param '{m.group(1)}'; " \
                "add it to params in project.yaml or in the backfill"
        return f"undefined template variable: {exc.message}; define it in params or use a built-in variable"
    return f"template: {exc.message}"


def template_line(exc: BaseException) -> int:
    """The template line a runtime error came from (jinja keeps it in the traceback)."""
    tb = exc.__traceback__
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def column_of(source: str, line: int, exc: BaseException) -> int:
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return 1
    text = lines[line - 1]
    m = re.search(r"'([A-Za-z_][A-Za-z0-9_]*)'", str(getattr(exc, "message", "") or ""))
    if m:
        name = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(m.group(1)) + r"(?![A-Za-z0-9_])")
        # the name inside a {{ }} or {% %} of the line, else anywhere on it
        for span in [*re.finditer(r"\{\{.*?\}\}|\{%.*?%\}", text), None]:
            hit = name.search(text, span.start(), span.end()) if span else name.search(text)
            if hit:
                return hit.start() + 1
    i = text.find("{{")
    return i + 1 if i >= 0 else 1



sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
