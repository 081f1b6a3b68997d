"""How values reach SQL: tool-made text as is, everything else as a quoted literal.

Safety rule: a value reaches the SQL either in a form the tool produced itself (dates, numbers,
identifiers from `ref()`), or as a quoted SQL string literal. Nothing a user passes as a parameter is
ever pasted into SQL unquoted.

Speed rule: every date-derived value is wrapped in private-use marker characters while rendering, so
the planner can tell which parts of the SQL change from one date to the next. Two instances whose
SQL differs only inside the markers have the same *shape*, and a shape is parsed and checked once.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import jinja2

__all__ = ["MARK_CLOSE", "MARK_OPEN", "DateText", "SqlText", "finalize", "mark_values", "names_from_dates",
           "naming_marks", "quote_literal", "shape_of", "strip_marks", "text_in_quotes"]

MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"
# around a text value while rendering: checked to stand outside SQL strings and comments, then quoted
TEXT_OPEN, TEXT_CLOSE = "\ue002", "\ue003"
_PRIVATE = re.compile("[\ue000-\ue003]")
_SQL_QUOTING = re.compile("['\"\ue002]|--|/\\*|\\$(?:[A-Za-z_][A-Za-z0-9_]*)?\\$")
_MARKS = re.compile(f"{MARK_OPEN}([^{MARK_CLOSE}]*){MARK_CLOSE}")


class SqlText(str):
    """SQL text the tool produced in a fixed form (an identifier, a literal): rendered as is."""


class DateText(SqlText):
    """A date or time the tool formatted from the data timestamp (digits and separators only)."""


def quote_literal(value: str, dialect: str | None = None) -> str:
    """A SQL string literal of `value`; dialects where a backslash escapes (hive, mysql...) get theirs."""
    if dialect is None or dialect in _STANDARD_STRINGS:
        return "'" + value.replace("'", "''") + "'"
    return _dialect_literal(value, dialect)


_STANDARD_STRINGS = frozenset({"duckdb", "postgres", "trino", "presto", "sqlite"})


@lru_cache(maxsize=4096)
def _dialect_literal(value: str, dialect: str) -> str:
    from sqlglot import exp

    return exp.Literal.string(value).sql(dialect=dialect)


def strip_marks(text: str) -> str:
    return text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")


def finalize(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        str(value)  # a StrictUndefined raises UndefinedError, naming the variable
        raise jinja2.UndefinedError("a template variable is undefined")
    if isinstance(value, DateText):
        return MARK_OPEN + value + MARK_CLOSE
    if isinstance(value, SqlText):
        return str(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise jinja2.TemplateRuntimeError("cannot render a non-finite number into SQL")
        return repr(value)
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return finalize(DateText(f"{value.year:04d}" + value.strftime("-%m-%d %H:%M:%S")))
    if isinstance(value, date):
        return finalize(DateText(value.isoformat()))
    if isinstance(value, str):
        if _PRIVATE.search(value):
            raise jinja2.TemplateRuntimeError("a text value holds a private-use character U+E000..U+E003; "
                                              "remove it from the param")
        return TEXT_OPEN + value + TEXT_CLOSE
    if isinstance(value, list | tuple):
        return "(" + ", ".join(finalize(v) for v in value) + ")"
    raise jinja2.TemplateRuntimeError(f"cannot render a value of type {type(value).__name__} into SQL")


def shape_of(marked: str) -> str:
    """The SQL with its date values blanked out, except values that are part of a name: a date inside
    an identifier (`c{{ ds[8:10] }}`, `t_{{ ds_nodash }}`, `"{{ ds }}"`) makes a different name on each
    date, so its digits stay in the shape and every such date is checked on its own."""
    if not _may_name(marked):
        return _MARKS.sub(MARK_OPEN + MARK_CLOSE, marked)
    naming = set(naming_marks(marked))
    return _MARKS.sub(lambda m: m.group(0) if m.start() in naming else MARK_OPEN + MARK_CLOSE, marked)


def names_from_dates(marked: str) -> bool:
    """Does a date value stand inside an identifier of this SQL (see shape_of)?"""
    return _may_name(marked) and bool(naming_marks(marked))


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$")


def _may_name(marked: str) -> bool:
    return MARK_OPEN in marked and ('"' in marked or "`" in marked or _glued(marked))


def _glued(marked: str) -> bool:
    """Does a name character stand right before a date marker's start or right after its end? (The
    markers found with str.find: a regular expression over the whole SQL took 4x longer, for every
    instance a plan renders.)"""
    i = marked.find(MARK_OPEN)
    while i != -1:
        if i and marked[i - 1] in _NAME_CHARS:
            return True
        i = marked.find(MARK_OPEN, i + 1)
    i = marked.find(MARK_CLOSE)
    while i != -1:
        if marked[i + 1:i + 2] in _NAME_CHARS:  # '' at the end: not in the set
            return True
        i = marked.find(MARK_CLOSE, i + 1)
    return False


def naming_marks(marked: str) -> list[int]:
    """Offsets of the date markers that stand inside a quoted name or glued to a bare one."""
    out: list[int] = []
    quote = ""  # the quote we are inside: ', ", `, -- or /*
    i, n = 0, len(marked)
    while i < n:
        ch = marked[i]
        if quote:
            if quote in ("'", '"', "`") and ch == quote or quote == "--" and ch == "\n":
                quote = ""
            elif quote == "/*" and marked.startswith("*/", i):
                quote, i = "", i + 1
            elif ch == MARK_OPEN and quote in ('"', "`"):
                out.append(i)
        elif ch in ("'", '"', "`"):
            quote = ch
        elif marked.startswith("--", i) or marked.startswith("/*", i):
            quote, i = marked[i:i + 2], i + 1
        elif ch == MARK_OPEN:
            end = marked.find(MARK_CLOSE, i)
            before = marked[i - 1] if i else " "
            after = marked[end + 1] if 0 <= end < n - 1 else " "
            if before.isalnum() or before in "_$" or after.isalnum() or after in "_$":
                out.append(i)
        i += 1
    return out


def mark_values(marked: str) -> list[str]:
    return _MARKS.findall(marked)


def text_in_quotes(sql: str) -> tuple[int, str] | None:
    """(offset, what) of the first text value inside a quoted SQL string, quoted name or comment."""
    i = 0
    while True:
        m = _SQL_QUOTING.search(sql, i)
        if m is None:
            return None
        tok, pos = m.group(0), m.start()
        if tok == TEXT_OPEN:
            before = sql[pos - 1] if pos else " "
            if before.isalnum() or before in "_$&":
                return pos, "right after a name or a string prefix"
            i = sql.index(TEXT_CLOSE, pos) + 1  # values hold no marker (see _finalize)
            continue
        if tok.startswith("$"):
            end, where = sql.find(tok, pos + len(tok)), "a dollar-quoted SQL string"
        elif tok in ("'", '"'):
            end, where = sql.find(tok, pos + 1), "a quoted SQL string" if tok == "'" else "a quoted SQL name"
        elif tok == "--":
            end, where = sql.find("\n", pos), "a SQL comment"
        else:
            end, where = sql.find("*/", pos + 2), "a SQL comment"
        end = len(sql) if end < 0 else end
        inside = sql.find(TEXT_OPEN, pos, end)
        if inside >= 0:
            return inside, where
        i = end + 1
