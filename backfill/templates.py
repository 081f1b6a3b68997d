"""Sandboxed Jinja SQL templates.

Safety rule: a value reaches the SQL either in a form the tool produced itself (dates, numbers,
identifiers from `ref()`), or as a quoted SQL string literal. Nothing a user passes as a parameter is
ever pasted into SQL unquoted.

Speed rule: every date-derived value is wrapped in private-use marker characters while rendering, so
the planner can tell which parts of the SQL change from one date to the next. Two instances whose
SQL differs only inside the markers have the same *shape*, and a shape is parsed and checked once.
"""

from __future__ import annotations

import calendar
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from . import dataphin
from .datefill import Filled, Slots, SymbolicDate, is_date_linear, lift
from .errors import SpecError, snippet
from .model import Table, Template

__all__ = [
    "MARK_CLOSE",
    "MARK_OPEN",
    "CompiledTemplate",
    "RenderContext",
    "Rendered",
    "SqlText",
    "DateText",
    "quote_literal",
    "strip_marks",
]

MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"
# around a text value while rendering: checked to stand outside SQL strings and comments, then quoted
_TEXT_OPEN, _TEXT_CLOSE = "\ue002", "\ue003"
_PRIVATE = re.compile("[\ue000-\ue003]")
_SQL_QUOTING = re.compile("['\"\ue002]|--|/\\*")
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


def _finalize(value: Any) -> str:
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
        return _finalize(DateText(value.strftime("%Y-%m-%d %H:%M:%S")))
    if isinstance(value, date):
        return _finalize(DateText(value.isoformat()))
    if isinstance(value, str):
        if _PRIVATE.search(value):
            raise jinja2.TemplateRuntimeError("a text value holds a private-use character U+E000..U+E003; "
                                              "remove it from the param")
        return _TEXT_OPEN + value + _TEXT_CLOSE
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_finalize(v) for v in value) + ")"
    raise jinja2.TemplateRuntimeError(f"cannot render a value of type {type(value).__name__} into SQL")


# ---------------------------------------------------------------- date helpers

@lru_cache(maxsize=65536)
def fmt_date(ts: datetime, fmt: str) -> str:
    """`ts.strftime(fmt)`, cached: planning formats the same few thousand timestamps over and over."""
    return ts.strftime(fmt)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value)
    if len(text) == 8 and text.isdigit():
        return datetime.strptime(text, "%Y%m%d")
    return datetime.fromisoformat(text)


def _shift_months(d: datetime, months: int) -> datetime:
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    return d.replace(year=y, month=m, day=min(d.day, calendar.monthrange(y, m)[1]))


def _same_form(original: Any, shifted: datetime) -> DateText:
    text = str(original)
    if len(text) == 8 and text.isdigit():
        return DateText(fmt_date(shifted, "%Y%m%d"))
    if isinstance(original, datetime) or len(text) > 10:
        return DateText(fmt_date(shifted, "%Y-%m-%d %H:%M:%S"))
    return DateText(fmt_date(shifted, "%Y-%m-%d"))


@lru_cache(maxsize=65536)
def ds_add(value: Any, days: int) -> DateText:
    """`ds_add(ds, -7)`: the date n days away, in the same form (YYYY-MM-DD or YYYYMMDD)."""
    return _same_form(value, _as_datetime(value) + timedelta(days=int(days)))


@lru_cache(maxsize=65536)
def add_months(value: Any, months: int) -> DateText:
    return _same_form(value, _shift_months(_as_datetime(value), int(months)))


@lru_cache(maxsize=65536)
def add_hours(value: Any, hours: int) -> DateText:
    return DateText((_as_datetime(value) + timedelta(hours=int(hours))).strftime("%Y-%m-%d %H:%M:%S"))


@lru_cache(maxsize=65536)
def date_format(value: Any, fmt: str) -> DateText:
    """strftime of a date; only digits and separators may come out."""
    out = _as_datetime(value).strftime(str(fmt))
    if not re.fullmatch(r"[0-9 :T/._-]*", out):
        raise jinja2.TemplateRuntimeError(f"date_format may only produce digits and separators, got {out!r}")
    return DateText(out)


# ---------------------------------------------------------------- compilation

@dataclass(frozen=True)
class RenderContext:
    """What a template sees, for one instance."""

    data_timestamp: datetime
    hourly: bool
    params: Mapping[str, Any]

    def variables(self) -> dict[str, Any]:
        ts = self.data_timestamp
        v: dict[str, Any] = {
            "ds": DateText(fmt_date(ts, "%Y-%m-%d")),
            "ds_nodash": DateText(fmt_date(ts, "%Y%m%d")),
            "bizdate": DateText(fmt_date(ts, "%Y%m%d")),
            "data_timestamp": ts,
            "params": self.params,
        }
        if self.hourly:
            v.update(hour=DateText(fmt_date(ts, "%H")), ts=DateText(fmt_date(ts, "%Y-%m-%d %H:%M:%S")),
                     ts_nodash=DateText(fmt_date(ts, "%Y%m%d%H%M%S")))
        return v

    def cyctime(self) -> datetime:
        return self.data_timestamp + (timedelta(hours=1) if self.hourly else timedelta(days=1))


@dataclass(frozen=True)
class Rendered:
    marked: str  # with date markers: its shape is `shape_of(marked)`
    refs: tuple[str, ...]  # tables named through ref(), in order of first use
    known_shape: str | None = None  # given when the renderer knows it (date-filled renders)

    @property
    def sql(self) -> str:
        return strip_marks(self.marked)

    @property
    def shape(self) -> str:
        return self.known_shape if self.known_shape is not None else shape_of(self.marked)


def _strftime(fmt: str) -> Callable[[datetime], str]:
    return lambda ts: fmt_date(ts, fmt)


class _SymbolicDateText(DateText, SymbolicDate):
    """A symbolic date that finalize marks like any date (see datefill)."""


@dataclass
class _FastPath:
    params: Mapping[str, Any]  # the very object this entry was made for (entries are keyed by its id)
    filled: Filled | None
    refs: tuple[str, ...] = ()
    checked: int = 0  # instances compared with a real render so far
    shape: str | None = None  # the same for every instance it fills


def shape_of(marked: str) -> str:
    return _MARKS.sub(MARK_OPEN + MARK_CLOSE, marked)


def mark_values(marked: str) -> list[str]:
    return _MARKS.findall(marked)


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


_ENV = _BoundedSandbox(undefined=jinja2.StrictUndefined, finalize=_finalize, autoescape=False,
                            keep_trailing_newline=True)
# `range` stays the sandbox's own, which refuses ranges of more than MAX_RANGE items
_ENV.globals.update(ds_add=lift(ds_add), add_days=lift(ds_add), add_months=lift(add_months),
                    add_hours=lift(add_hours), date_format=lift(date_format))
_QUOTED_PARAM = re.compile(r"""(['"])\s*\{\{\s*params\b[^}]*\}\}\s*\1""")


def _sched_jinja(source: str) -> str:
    """Turn Dataphin/DataWorks scheduling parameters into calls the sandbox can evaluate per date."""
    params = dataphin.find_params(source)
    for p in reversed(params):
        source = source[: p.start] + "{{ __sched(" + repr(p.text) + ") }}" + source[p.end :]
    return source


class CompiledTemplate:
    """A table's template compiled once; `render` is called per data timestamp."""

    def __init__(self, table: Table, physical: Callable[[str], str], source_ref: Callable[[str], str],
                 dialect: str | None = None):
        self.table = table
        self.dialect = dialect  # of the rendered SQL: how text values are quoted
        self.template: Template = table.template
        self._physical = physical
        self._source_ref = source_ref
        self._sched_cache: dict[str, dataphin.SchedParam] = {}
        src = self.template.source
        m = _QUOTED_PARAM.search(src)
        if m:
            raise self._failure_at(m.start(), "a param renders as a quoted SQL literal already; "
                                   "remove the quotes around " + m.group(0)[1:-1].strip())
        try:
            converted = _sched_jinja(src)
        except dataphin.SchedParamError as exc:
            raise self._failure_at(exc.offset, exc.message) from None
        for p in dataphin.find_params(src):
            self._sched_cache[p.text] = p
        try:
            self._jinja = _ENV.from_string(converted)
            self._globals = dict(self._jinja.globals)
            self._linear = is_date_linear(_ENV.parse(converted))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateFailure(f"template syntax: {exc.message}", exc.lineno, 1) from None
        self._fast: dict[int, _FastPath] = {}

    def _failure_at(self, offset: int, message: str) -> TemplateFailure:
        src = self.template.source
        line = src.count("\n", 0, offset) + 1
        col = offset - (src.rfind("\n", 0, offset) + 1) + 1
        return TemplateFailure(message, line, col)

    def render(self, ctx: RenderContext) -> Rendered:
        """The instance's SQL: filled into a once-rendered text when the template is date-linear
        (checked against real renders on the first two dates), else rendered in full."""
        if not self._linear:
            return self._render(ctx)
        entry = self._fast.get(id(ctx.params))
        if entry is None or entry.params is not ctx.params:
            entry = self._symbolic(ctx)
            self._fast[id(ctx.params)] = entry
        if entry.filled is None:
            return self._render(ctx)
        try:
            marked = entry.filled.fill(ctx.data_timestamp)
        except Exception:  # noqa: BLE001 - the real render reports it properly
            return self._render(ctx)
        if entry.checked < 2:
            real = self._render(ctx)
            entry.checked += 1
            if (real.marked, real.refs) != (marked, entry.refs):
                entry.filled = None
            elif entry.shape is None:
                entry.shape = shape_of(real.marked)
            return real
        return Rendered(marked, entry.refs, entry.shape)

    def _symbolic(self, ctx: RenderContext) -> _FastPath:
        slots = Slots(_SymbolicDateText)
        formats = {"ds": "%Y-%m-%d", "ds_nodash": "%Y%m%d", "bizdate": "%Y%m%d"}
        if ctx.hourly:
            formats.update(hour="%H", ts="%Y-%m-%d %H:%M:%S", ts_nodash="%Y%m%d%H%M%S")
        variables: dict[str, Any] = {name: slots.new(_strftime(fmt)) for name, fmt in formats.items()}
        variables["params"] = ctx.params
        hour = timedelta(hours=1) if ctx.hourly else timedelta(days=1)

        def sched(text: str) -> SymbolicDate:
            param = self._sched_cache[text]
            return slots.new(lambda t: dataphin.evaluate(param, t, t + hour))

        refs: list[str] = []
        try:
            out = self._render_with(variables, refs, sched)
        except Exception:  # noqa: BLE001 - not renderable symbolically: render per date instead
            return _FastPath(ctx.params, None)
        return _FastPath(ctx.params, Filled(out, slots), tuple(refs))

    def _render(self, ctx: RenderContext) -> Rendered:
        refs: list[str] = []

        def sched(text: str) -> DateText:
            return DateText(dataphin.evaluate(self._sched_cache[text], ctx.data_timestamp, ctx.cyctime()))

        return Rendered(self._render_with(ctx.variables(), refs, sched), tuple(refs))

    def _render_with(self, variables: dict[str, Any], refs: list[str], sched: Callable[[str], str]) -> str:
        def ref(name: str) -> SqlText:
            name = str(name)
            if name not in refs:
                refs.append(name)
            return SqlText(self._physical(name))

        def source(path: str) -> SqlText:
            return SqlText(self._source_ref(str(path)))

        variables = {**self._globals, **variables, "ref": ref, "source": source, "__sched": sched}
        try:
            try:  # Template.render, minus re-merging the environment globals on every call
                out = _ENV.concat(self._jinja.root_render_func(self._jinja.new_context(variables, shared=True)))
            except Exception:
                _ENV.handle_exception()  # re-raises with the template's own line numbers
                raise
        except jinja2.TemplateError as exc:
            line = _template_line(exc)
            raise TemplateFailure(_describe(exc), line, _column_of(self.template.source, line, exc)) from None
        except (ValueError, TypeError, OverflowError, ArithmeticError, MemoryError, RecursionError) as exc:
            line = _template_line(exc)
            raise TemplateFailure(f"template: {exc}", line, 1) from None
        if _TEXT_OPEN in out:
            out = self._quote_text(out)
        return out

    def _quote_text(self, out: str) -> str:
        """Quote every text value, refusing one rendered inside a SQL string, quoted name or comment."""
        misplaced = _text_in_quotes(out)
        if misplaced is not None:
            pos, where = misplaced
            line = out.count("\n", 0, pos) + 1
            lines = self.template.source.splitlines()
            text = lines[line - 1] if 1 <= line <= len(lines) else ""
            spans = list(re.finditer(r"\{\{.*?\}\}", text))
            culprit = next((m for m in spans if "params" in m.group(0)), spans[0] if spans else None)
            col = culprit.start() + 1 if culprit else 1
            fix = "move it out of the comment" if "comment" in where else \
                "remove the quotes around it, or build the whole text in Jinja, e.g. {{ '%' ~ params.x ~ '%' }}"
            raise TemplateFailure(f"a text value is rendered inside {where}; it renders as a complete quoted "
                                  f"SQL literal: {fix}", line, col)
        return re.sub(f"{_TEXT_OPEN}([^{_TEXT_CLOSE}]*){_TEXT_CLOSE}",
                      lambda m: quote_literal(m.group(1), self.dialect), out)

    def error(self, failure: TemplateFailure, ds: str | None = None) -> SpecError:
        t = self.template
        line = failure.line + t.line_offset
        col = failure.col + (t.col_offset if failure.line >= 1 else 0)
        return SpecError(
            failure.message, file=t.file, line=line, col=col, table=self.table.name, ds=ds,
            detail=snippet(t.source, failure.line, failure.col),
        )


def _describe(exc: jinja2.TemplateError) -> str:
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


def _template_line(exc: BaseException) -> int:
    """The template line a runtime error came from (jinja keeps it in the traceback)."""
    tb = exc.__traceback__
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _column_of(source: str, line: int, exc: BaseException) -> int:
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


def _text_in_quotes(sql: str) -> tuple[int, str] | None:
    """(offset, what) of the first text value inside a quoted SQL string, quoted name or comment."""
    i = 0
    while True:
        m = _SQL_QUOTING.search(sql, i)
        if m is None:
            return None
        tok, pos = m.group(0), m.start()
        if tok == _TEXT_OPEN:
            i = sql.index(_TEXT_CLOSE, pos) + 1  # values hold no marker (see _finalize)
            continue
        if tok in ("'", '"'):
            end, where = sql.find(tok, pos + 1), "a quoted SQL string" if tok == "'" else "a quoted SQL name"
        elif tok == "--":
            end, where = sql.find("\n", pos), "a SQL comment"
        else:
            end, where = sql.find("*/", pos + 2), "a SQL comment"
        end = len(sql) if end < 0 else end
        inside = sql.find(_TEXT_OPEN, pos, end)
        if inside >= 0:
            return inside, where
        i = end + 1

sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
