"""Sandboxed Jinja SQL templates: a table's template compiled once, rendered per data timestamp.

Quoting rules live in `quoting.py`, the sandbox in `sandbox.py`, the variables in `context.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jinja2
import jinja2.meta

from ..errors import SpecError, snippet
from ..spec.model import Table, Template
from ..spec.reserved import template_name_problem
from . import bounds, dataphin
from .context import RenderContext, add_hours, add_months, date_format, ds_add, fmt_date
from .datefill import Filled, Slots, SymbolicDate, is_date_linear
from .quoting import (
    TEXT_CLOSE,
    TEXT_OPEN,
    DateText,
    SqlText,
    mark_values,
    names_from_dates,
    quote_literal,
    shape_of,
    strip_marks,
    text_in_quotes,
)
from .rangecheck import per_partition_in_range
from .sandbox import (
    ENV,
    LIMIT_PREFIX,
    QUOTED_PARAM,
    TemplateFailure,
    column_of,
    describe,
    line_col,
    sched_jinja,
    template_line,
)

__all__ = [
    "CompiledTemplate",
    "DateText",
    "RenderContext",
    "Rendered",
    "SqlText",
    "TemplateFailure",
    "add_hours",
    "add_months",
    "date_format",
    "ds_add",
    "fmt_date",
    "mark_values",
    "quote_literal",
    "shape_of",
    "strip_marks",
]

RANGE_VARIABLES = frozenset({"start_ds", "end_ds", "start_ts", "end_ts"})


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


def _problem(exc: Exception) -> str:
    """What a Python error raised inside a template says; named by its type where the text alone is
    unclear (KeyError: 'k', IndexError: pop from empty list)."""
    text = " ".join(str(exc).split())
    if text and isinstance(exc, ValueError | TypeError | ArithmeticError | MemoryError | RecursionError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _SymbolicDateText(DateText, SymbolicDate):
    """A symbolic date that finalize marks like any date (see datefill)."""


@dataclass
class _FastPath:
    params: Mapping[str, Any]  # the very object this entry was made for (entries are keyed by its id)
    filled: Filled | None
    refs: tuple[str, ...] = ()
    checked: int = 0  # instances compared with a real render so far
    shape: str | None = None  # the same for every instance it fills


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
        m = QUOTED_PARAM.search(src)
        if m:
            raise self._failure_at(m.start(), "a param renders as a quoted SQL literal already; "
                                   "remove the quotes around " + m.group(0)[1:-1].strip())
        try:
            converted = sched_jinja(src)
        except dataphin.SchedParamError as exc:
            raise self._failure_at(exc.offset, exc.message) from None
        for p in dataphin.find_params(src):
            self._sched_cache[p.text] = p
        self._refuse_internal_names(src)
        try:
            self._jinja = ENV.from_string(converted)
            self._globals = dict(self._jinja.globals)
            parsed = ENV.parse(converted)
            self._linear = is_date_linear(parsed)
            # a range template selects a batch of partitions at once: it names the batch's bounds
            self.ranged = bool(jinja2.meta.find_undeclared_variables(parsed) & RANGE_VARIABLES)
            per_partition = per_partition_in_range(ENV, src, parsed) if self.ranged else None
            if per_partition is not None:
                raise TemplateFailure(*per_partition)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateFailure(f"template syntax: {exc.message}", exc.lineno, 1) from None
        self._fast: dict[int, _FastPath] = {}

    def _refuse_internal_names(self, src: str) -> None:
        """A name of the tool's internal helpers (`__sched`, ...) used by the template itself."""
        try:
            names = ENV.parse(src).find_all(jinja2.nodes.Name)
        except jinja2.TemplateSyntaxError:
            return  # reported with its position when the converted template is compiled
        for node in names:
            problem = template_name_problem(node.name)
            if problem:
                lines = src.splitlines()
                text = lines[node.lineno - 1] if 1 <= node.lineno <= len(lines) else ""
                raise TemplateFailure(problem, node.lineno, text.find(node.name) + 1 if node.name in text else 1)

    def _failure_at(self, offset: int, message: str) -> TemplateFailure:
        return TemplateFailure(message, *line_col(self.template.source, offset))

    def render(self, ctx: RenderContext) -> Rendered:
        """The instance's SQL: filled into a once-rendered text when the template is date-linear
        (checked against real renders on the first two dates), else rendered in full."""
        if not self._linear or ctx.start is not None or ctx.end is not None:
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
            elif entry.shape is None and not names_from_dates(real.marked):
                entry.shape = shape_of(real.marked)  # else each date's shape is its own (see shape_of)
            return real
        return Rendered(marked, entry.refs, entry.shape)

    def _symbolic(self, ctx: RenderContext) -> _FastPath:
        slots = Slots(_SymbolicDateText)
        formats = {"ds": "%Y-%m-%d", "ds_nodash": "%Y%m%d", "bizdate": "%Y%m%d",
                   "start_ds": "%Y-%m-%d", "end_ds": "%Y-%m-%d"}  # one instance alone: its own range
        if ctx.hourly:
            formats.update(hour="%H", ts="%Y-%m-%d %H:%M:%S", ts_nodash="%Y%m%d%H%M%S",
                           start_ts="%Y-%m-%d %H:%M:%S", end_ts="%Y-%m-%d %H:%M:%S")
        variables: dict[str, Any] = {name: slots.new(_strftime(fmt)) for name, fmt in formats.items()}
        variables["params"] = ctx.params
        hour = timedelta(hours=1) if ctx.hourly else timedelta(days=1)

        def sched(text: str) -> SymbolicDate:
            param = self._sched_cache[text]
            return slots.new(lambda t: dataphin.evaluate(param, t, t + hour))

        refs: list[str] = []
        try:
            out = self._render_with(variables, refs, sched)
        except TemplateFailure as exc:
            if exc.message.startswith(LIMIT_PREFIX):
                raise  # a rendering limit trips for every date alike: no second attempt
            return _FastPath(ctx.params, None)
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
                with bounds.budget():
                    out = bounds.bounded_output(
                        self._jinja.root_render_func(self._jinja.new_context(variables, shared=True)))
            except Exception:
                ENV.handle_exception()  # re-raises with the template's own line numbers
                raise
        except jinja2.TemplateError as exc:
            line = template_line(exc)
            raise TemplateFailure(describe(exc), line, column_of(self.template.source, line, exc)) from None
        except TemplateFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a template's expression raises is the template's error
            line = template_line(exc)
            raise TemplateFailure(f"template: {_problem(exc)}", line, column_of(self.template.source, line, exc)) \
                from None
        if TEXT_OPEN in out:
            out = self._quote_text(out)
        return out

    def _quote_text(self, out: str) -> str:
        """Quote every text value, refusing one rendered inside a SQL string, quoted name or comment."""
        misplaced = text_in_quotes(out)
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
            if where.startswith("right after"):
                raise TemplateFailure("a text value is rendered right after a name or a string prefix (such as E "
                                      "or U&), which would change how its quotes are read; put a space or an "
                                      "operator before it", line, col)
            raise TemplateFailure(f"a text value is rendered inside {where}; it renders as a complete quoted "
                                  f"SQL literal: {fix}", line, col)
        return re.sub(f"{TEXT_OPEN}([^{TEXT_CLOSE}]*){TEXT_CLOSE}",
                      lambda m: quote_literal(m.group(1), self.dialect), out)

    def error(self, failure: TemplateFailure, ds: str | None = None) -> SpecError:
        t = self.template
        line, col = t.at(failure.line, failure.col) if failure.line >= 1 else (t.line_offset, failure.col)
        return SpecError(
            failure.message, file=t.file, line=line, col=col, table=self.table.name, ds=ds,
            detail=snippet(t.source, failure.line, failure.col),
        )
