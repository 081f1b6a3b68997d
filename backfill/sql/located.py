"""Errors of one instance's template or SQL, located in the template file (line, column, snippet)."""

from __future__ import annotations

import re

from ..errors import SpecError, snippet
from ..spec.model import Table
from .sqlcheck import SqlProblem
from .templates import TemplateFailure

__all__ = ["sql_error", "template_error"]


def _locate(source: str, token: str, near_line: int) -> tuple[int, int]:
    """Where `token` stands in the template, nearest to the rendered line it was found on."""
    if not token:
        return near_line, 1
    best: tuple[int, int, int] | None = None
    before = r"(?<![A-Za-z0-9_])" if re.match(r"\w", token) else ""  # whole words; punctuation as is
    after = r"(?![A-Za-z0-9_])" if re.search(r"\w$", token) else ""
    pattern = re.compile(before + re.escape(token) + after, re.I)
    for n, line in enumerate(source.splitlines(), start=1):
        for m in pattern.finditer(line):
            cand = (abs(n - near_line), n, m.start() + 1)
            if best is None or cand < best:
                best = cand
    return (best[1], best[2]) if best else (near_line, 1)


def template_error(table: Table, exc: TemplateFailure, ds: str | None) -> SpecError:
    t = table.template
    message = f"{exc.message} (table {table.name}" + (f", {ds})" if ds else ")")
    line, col = t.at(exc.line, exc.col)
    return SpecError(message, file=t.file, line=line, col=col, table=table.name, ds=ds,
                     detail=snippet(t.source, exc.line, exc.col))


def sql_error(table: Table, problem: SqlProblem, rendered_sql: str, ds: str | None) -> SpecError:
    t = table.template
    line, col = _locate(t.source, problem.token, problem.line)
    if not problem.token:
        line, col = min(problem.line, max(1, t.source.count("\n") + 1)), problem.col
    # the template line the location names, then the rendered SQL where sqlglot saw the problem
    detail = snippet(t.source, line, col)
    rendered_line = snippet(rendered_sql, problem.line, problem.col)
    if (problem.line, problem.col) != (1, 1) and rendered_line != detail:
        detail += "\n  rendered:\n" + rendered_line
    message = f"{problem.message} (table {table.name}" + (f", {ds})" if ds else ")")
    at_line, at_col = t.at(line, col)
    return SpecError(message, file=t.file, line=at_line, col=at_col, table=table.name, ds=ds, detail=detail)
