"""The Jinja sandbox templates render in, and how its failures are located in the template."""

from __future__ import annotations

import re
import sys
import time
import types
from collections.abc import Callable
from typing import Any, TypeVar

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Macro
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter

from . import bounds, dataphin
from .context import add_hours, add_months, date_format, ds_add
from .datefill import lift
from .quoting import finalize

__all__ = ["ENV", "LIMIT_PREFIX", "RenderingTime", "TemplateFailure", "column_of", "describe", "sched_jinja",
           "template_line"]

LIMIT_PREFIX = "template exceeds a rendering limit"
T = TypeVar("T")


class TemplateFailure(Exception):
    def __init__(self, message: str, line: int, col: int, culprit: str | None = None):
        super().__init__(message)
        self.message, self.line, self.col = message, line, col
        self.culprit = culprit  # the table whose template it is, where not the one rendering


class RenderingTime:
    """CPU time all the renderings of one check of a project may take (each is bounded too): a template
    just under the bound per instance still adds up over thousands of dates."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = bounds.MAX_TOTAL_SECONDS if seconds is None else seconds
        self.spent: dict[str, float] = {}  # per table

    def run(self, table: str, render: Callable[[], T]) -> T:
        if sum(self.spent.values()) > self.seconds:  # named once, by the table that took the most
            raise TemplateFailure(f"{LIMIT_PREFIX}: rendering every instance took more than {self.seconds:g} s of "
                                  "CPU time in all; make the templates do less work, or plan fewer dates", 1, 1,
                                  max(self.spent, key=self.spent.__getitem__))
        started = time.thread_time()
        try:
            return render()
        finally:
            self.spent[table] = self.spent.get(table, 0.0) + time.thread_time() - started


class _Generator(CodeGenerator):
    """Routes every `for` loop's iterable and every `~` through the rendering bounds."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        bounded = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [], None, None,
                             lineno=node.lineno)
        copy = nodes.For(node.target, bounded, node.body, node.else_, node.test, node.recursive,
                         lineno=node.lineno)
        super().visit_For(copy, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, plus bounds (see bounds.py) so a template cannot exhaust memory or hang rendering."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    bounded_iter = staticmethod(bounds.bounded_iter)
    bounded_concat = staticmethod(bounds.bounded_concat)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        bounds.check_time()
        if operator == "**" and isinstance(right, int | float) and abs(right) > 100:
            raise SecurityError("exponent too large (at most 100)")
        if operator in ("*", "**") and bounds.int_too_big(left, right, operator):
            raise bounds.RenderLimit(f"'{operator}' would make a number of more than {bounds.MAX_BITS:,} bits; "
                                     "use smaller numbers")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > bounds.MAX_ITEMS:
                    raise SecurityError(f"repetition too large (at most {bounds.MAX_ITEMS} items)")
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            bounds.expected_size(len(left) + len(right), "'+'")
        if operator == "%" and isinstance(left, str):
            bounds.check_percent_format(left)
        return bounds.check_size(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        bounds.check_time()
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        bounds.check_time()
        if isinstance(__obj, Macro):
            bounds.enter_macro()
            try:
                return bounds.check_size(SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))
            finally:
                bounds.leave_macro()
        if type(__obj) is types.BuiltinMethodType and isinstance(__obj.__self__, str):
            args = _check_str_method(__obj.__self__, __obj.__name__, args)
        return bounds.check_size(SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        text: str = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> str:
            return str(_BoundedFormatter(self).vformat(text, args, kwargs)) if value.__name__ == "format" \
                else wrapper(*args, **kwargs)
        return bounded


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        bounds.check_spec(format_spec)
        return super().format_field(value, format_spec)


def _check_str_method(text: str, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Refuse, before it runs, a str method call whose result would be too large; the arguments to
    call it with (an iterable to join is read once, here)."""
    if name in _PADDING and args and isinstance(args[0], int):
        bounds.expected_size(args[0], f"str.{name}")
    elif name == "expandtabs":
        size = int(args[0]) if args and isinstance(args[0], int) else 8
        bounds.expected_size(len(text) + text.count("\t") * size, "str.expandtabs")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        hits = text.count(old) if old else len(text) + 1
        bounds.expected_size(len(text) + hits * max(0, len(new) - len(old)), "str.replace")
    elif name == "join" and args:
        items = list(bounds.bounded_iter(args[0]))
        sizes = sum(len(i) for i in items if isinstance(i, str))
        bounds.expected_size(sizes + len(text) * max(0, len(items) - 1), "str.join")
        return (items, *args[1:])
    return args


ENV = _BoundedSandbox(undefined=jinja2.StrictUndefined, finalize=finalize, autoescape=False,
                            keep_trailing_newline=True)
ENV.globals.update(range=bounds.bounded_range)
bounds.bound_filters(ENV.filters)
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
    from jinja2.exceptions import UndefinedError

    if isinstance(exc, bounds.RenderLimit):
        return f"{LIMIT_PREFIX}: {exc.message}"
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
        col = name_column(text, m.group(1))
        if col:
            return col
    i = text.find("{{")
    return i + 1 if i >= 0 else 1


def name_column(text: str, name: str) -> int | None:
    """Where the word `name` stands on a template line: inside a {{ }} or {% %} first, else anywhere."""
    word = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])")
    for span in [*re.finditer(r"\{\{.*?\}\}|\{%.*?%\}", text), None]:
        hit = word.search(text, span.start(), span.end()) if span else word.search(text)
        if hit:
            return hit.start() + 1
    return None


def line_col(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of a character offset in `text`."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
