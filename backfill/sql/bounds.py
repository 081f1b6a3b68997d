"""Bounds on what rendering one template may cost: time, string and output size, range length,
macro depth. Each bound that trips is a `RenderLimit`, reported as an `error:` line that names the
template and what to change.

Checks sit where the sandbox already intercepts: every call (filters, methods, macros, `range`),
attribute access, the arithmetic operators, every `for` loop's iterable and every `~`
concatenation (the code generator routes those through `bounded_iter` and `bounded_concat`), and
every chunk of output. Growth is refused before it happens where Python would allocate it at once
(format widths, padding, repetition, join, replace, powers); anything else is refused as soon as a
value it made is too large. The time bound is checked at those same points, so a loop, a recursion or
a chain of operators that runs too long is stopped in the rendering thread itself.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from jinja2.exceptions import SecurityError

__all__ = [
    "MAX_DEPTH", "MAX_ITEMS", "MAX_MADE", "MAX_OUTPUT", "MAX_SECONDS", "MAX_STRING", "MAX_TOTAL_SECONDS",
    "RenderLimit", "budget",
    "check_percent_format", "check_size", "check_spec", "check_time", "enter_macro", "leave_macro",
    "expected_size",
]

MAX_STRING = 1_000_000  # characters of any text a template makes
MAX_OUTPUT = 1_000_000  # characters of rendered SQL
MAX_ITEMS = 100_000  # items of a range, a repetition or a joined list
MAX_DEPTH = 50  # macro calls inside each other
MAX_TOTAL_SECONDS = 30.0  # CPU seconds rendering every instance of a project may take in all
MAX_SECONDS = 2.0  # CPU seconds rendering one instance may take (CPU time: a loaded machine does not trip it)
MAX_BITS = 100_000  # size of an integer a template computes
MAX_MADE = 20_000_000  # characters or items of all the values one rendering makes (what a loop may keep)


class RenderLimit(SecurityError):
    """A bound on rendering tripped; the message says which one and what to change."""


class _Budget(threading.local):
    deadline: float | None = None
    depth: int = 0
    made: int = 0


_budget = _Budget()


@contextmanager
def budget(seconds: float = MAX_SECONDS) -> Iterator[None]:
    """Rendering inside this block is bounded (in this thread); nested blocks keep the outer one."""
    if _budget.deadline is not None:
        yield
        return
    _budget.deadline, _budget.depth, _budget.made = time.thread_time() + seconds, 0, 0
    try:
        yield
    finally:
        _budget.deadline, _budget.depth, _budget.made = None, 0, 0


def check_time() -> None:
    deadline = _budget.deadline
    if deadline is not None and time.thread_time() > deadline:
        raise RenderLimit(f"rendering took more than {MAX_SECONDS:g} s of CPU time; make the template's loops, "
                          "macros or expressions do less work")


_SIZED = frozenset({str, bytes, list, tuple, dict})


def _count(size: int) -> None:
    """Add to what this rendering made: many values each under MAX_STRING still add up."""
    _budget.made += size
    if _budget.made > MAX_MADE and _budget.deadline is not None:
        raise RenderLimit(f"rendering made more than {MAX_MADE:,} characters or items in all; make the template's "
                          "loops build less text")


def check_size(value: Any, what: str = "a value") -> Any:
    if type(value) in _SIZED or isinstance(value, str):
        if len(value) > MAX_STRING:
            raise RenderLimit(f"{what} of {len(value):,} characters or items is too large "
                              f"(at most {MAX_STRING:,}); build smaller text")
        _count(len(value))
    return value


def expected_size(size: int, what: str) -> None:
    """Refuse, before it is made, a value of `size` characters or items."""
    if size > MAX_STRING:
        raise RenderLimit(f"{what} would make {size:,} characters or items (at most {MAX_STRING:,}); "
                          "build smaller text")
    _count(size)


def check_spec(spec: str, what: str = "format") -> None:
    """Refuse a str.format spec whose width or precision is too large."""
    for number in re.findall(r"\d+", spec):
        if len(number) > 7 or int(number) > MAX_ITEMS:
            raise RenderLimit(f"{what} width {number} is too large (at most {MAX_ITEMS:,}); use a smaller width")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def check_percent_format(fmt: str) -> None:
    """Refuse a %-format whose width or precision is too large or given as `*`."""
    for m in _PERCENT.finditer(fmt):
        for number in (m.group(1), m.group(2)):
            if number == "*":
                raise RenderLimit("a %-format width given as '*' is not allowed; write the width in the format")
            if number and (len(number) > 7 or int(number) > MAX_ITEMS):
                raise RenderLimit(f"format width {number} is too large (at most {MAX_ITEMS:,}); "
                                  "use a smaller width")


def enter_macro() -> None:
    _budget.depth += 1
    if _budget.depth > MAX_DEPTH:
        raise RenderLimit(f"macros call each other more than {MAX_DEPTH} deep (a recursion that does not "
                          "end?); make the recursion stop sooner")
    check_time()


def leave_macro() -> None:
    _budget.depth = max(0, _budget.depth - 1)


def bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    """A `for` loop's items, with the time checked as it goes."""
    check_time()
    for n, item in enumerate(iterable):
        if n & 255 == 255:
            check_time()
        yield item


def bounded_concat(parts: Iterable[Any]) -> str:
    """`a ~ b ~ c`, refused before it is made if the result would be too large."""
    texts = [str(p) for p in parts]
    expected_size(sum(map(len, texts)), "joining text with '~'")
    check_time()
    return "".join(texts)


def int_too_big(left: Any, right: Any, operator: str) -> bool:
    """Would `left operator right` on integers make a number beyond MAX_BITS?"""
    if not (isinstance(left, int) and isinstance(right, int)):
        return False
    if operator == "**":
        return right > 0 and abs(left) > 1 and abs(left).bit_length() * right > MAX_BITS
    return abs(left).bit_length() + abs(right).bit_length() > MAX_BITS


def bounded_range(*args: int) -> range:
    """`range`, refused beyond MAX_ITEMS items."""
    rng = range(*args)
    if len(rng) > MAX_ITEMS:
        raise RenderLimit(f"range of {len(rng):,} items is too long (at most {MAX_ITEMS:,}); iterate over fewer")
    check_time()
    return rng


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(str(value))


def _bound_format(original: Callable[..., Any]) -> Callable[..., Any]:
    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        check_percent_format(str(value))
        return original(value, *args, **kwargs)
    return format_


def _bound_width(original: Callable[..., Any], name: str, default: int) -> Callable[..., Any]:
    def padded(value: Any, width: Any = default, *args: Any, **kwargs: Any) -> Any:
        lines = str(value).count("\n") + 1 if name == "indent" else 1
        size = _sized(width) if isinstance(width, str) else int(width) if isinstance(width, int) else 0
        expected_size(_sized(value) + size * lines, f"the {name} filter")
        return original(value, width, *args, **kwargs)
    return padded


def _bound_join(original: Callable[..., Any]) -> Callable[..., Any]:
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = list(bounded_iter(value))
        expected_size(sum(map(_sized, items)) + len(str(d)) * max(0, len(items) - 1), "the join filter")
        return original(eval_ctx, items, d, attribute)
    return join


def _bound_replace(original: Callable[..., Any]) -> Callable[..., Any]:
    def replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> Any:
        text, o, n = str(s), str(old), str(new)
        hits = (text.count(o) if o else len(text) + 1) if count is None else min(int(count), len(text) + 1)
        expected_size(len(text) + hits * max(0, len(n) - len(o)), "the replace filter")
        return original(eval_ctx, s, old, new, count)
    return replace


def _checked(original: Callable[..., Any]) -> Callable[..., Any]:
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_time()
        return check_size(original(*args, **kwargs), "a filter's result")
    return checked


def bound_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """Wrap the sandbox's filters: growth refused up front where it is known, every result checked."""
    special = {"format": _bound_format, "join": _bound_join, "replace": _bound_replace,
               "center": lambda f: _bound_width(f, "center", 80), "indent": lambda f: _bound_width(f, "indent", 4)}
    for name, original in list(filters.items()):
        wrapped = special[name](original) if name in special else original
        checked = _checked(wrapped)
        functools.update_wrapper(checked, original)  # keeps pass_eval_context and friends
        filters[name] = checked


def bounded_output(chunks: Iterable[str]) -> str:
    """The rendered text, refused before it is joined if longer than MAX_OUTPUT characters (loops that
    produce the chunks are bounded in time by `bounded_iter`)."""
    parts = list(chunks)
    size = sum(map(len, parts))
    if size > MAX_OUTPUT:
        raise RenderLimit(f"the rendered SQL is longer than {MAX_OUTPUT:,} characters ({size:,}); render less text")
    return "".join(parts)
