"""What the engine runs is checked, not only what the template says.

When the project's dialect differs from the engine's (a DuckDB-dialect project on a PostgreSQL
warehouse, or a PostgreSQL-dialect integration table extracted by DuckDB), sqlglot writes the SQL out
again for the engine. A node sqlglot knows can be written out as a function the template never named
(`ANONYMOUS_AGG_FUNC('pg_read_file', ...)` became `PG_READ_FILE(...)` before functions.py judged such
nodes by that name). Rather than trust that every such node is known, the written-out SQL is read back
in the engine's dialect and its calls judged again: allowed are the functions sqlglot knows there,
the functions on any dialect's allow-list (a harmless spelling the translation chose) and the
project's `allow_functions`; file readers only on paths under the source folders. Once per SQL shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sqlglot
from sqlglot.errors import SqlglotError

from .functions import ALLOWED, function_problems
from .sqlcheck import SqlProblem

__all__ = ["WrittenOutRefused", "check_written_out"]

_ANY_DIALECT = frozenset().union(*ALLOWED.values())


class WrittenOutRefused(Exception):
    """The SQL written out for the engine calls what a template may not."""

    def __init__(self, problem: SqlProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def check_written_out(sql: str, dialect: str, allow_functions: Iterable[str], sources: Iterable[str],
                      escapes: Callable[[str], str | None] | None = None) -> None:
    """Raise WrittenOutRefused for the first call in `sql` (written for `dialect`) not allowed there."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError:
        return  # what sqlglot cannot read back it did not write: the template's own check stands
    found = function_problems(tree, dialect, _ANY_DIALECT | frozenset(allow_functions), sources, escapes)
    if found:
        first = found[0]  # its name may not appear in the template: the error stands at the template's start
        raise WrittenOutRefused(SqlProblem(f"the SQL written out for {dialect} is refused: {first.message}", 1, 1))
