"""Render a template once, fill its dates per instance.

Planning 36,500 instances means 36,500 renders, and Jinja alone costs ~100 us each for realistic
templates. Most templates use the data timestamp only as *values*: `{{ ds }}`, `{{ ds_add(ds, -6) }}`,
`${yyyymmdd-7}`. For those, the output for any date is the same text with different date slots. A
template qualifies ("date-linear") when, in its Jinja AST, every date variable and scheduling parameter
stands directly in an output `{{ ... }}`, possibly as the argument of a date helper, and never in a test,
a loop, an assignment, a filter or an expression. It is then rendered once with symbolic dates (each a
slot holding how to compute it), and each instance's SQL is that text with its own dates filled in.
The caller verifies the fast path against a real render on the first dates it meets; any template that
does not qualify, or any difference, keeps the ordinary per-date render.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from jinja2 import nodes

__all__ = ["DATE_HELPERS", "DATE_NAMES", "Filled", "Slots", "SymbolicDate", "is_date_linear", "lift"]

DATE_NAMES = frozenset({"ds", "ds_nodash", "bizdate", "hour", "ts", "ts_nodash",
                        "start_ds", "end_ds", "start_ts", "end_ts"})
DATE_HELPERS = frozenset({"ds_add", "add_days", "add_months", "add_hours", "date_format"})
_SCHED = "__sched"
_BLOCKING = (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.Include, nodes.Import, nodes.FromImport,
             nodes.Extends, nodes.Scope, nodes.With, nodes.Block)
TOKEN_OPEN, TOKEN_CLOSE = "\ue004", "\ue005"
_TOKEN = re.compile(f"{TOKEN_OPEN}(\\d+){TOKEN_CLOSE}")


def _walk(node: nodes.Node, chain: tuple[nodes.Node, ...]) -> Iterator[tuple[nodes.Node, tuple[nodes.Node, ...]]]:
    yield node, chain
    for child in node.iter_child_nodes():
        yield from _walk(child, (*chain, node))


def _value_position(node: nodes.Node, chain: tuple[nodes.Node, ...]) -> bool:
    """True when `node` is an output value, or an argument of date helpers that are themselves output values."""
    child = node
    for parent in reversed(chain):
        if isinstance(parent, nodes.Output):
            return True
        if (isinstance(parent, nodes.Call) and isinstance(parent.node, nodes.Name)
                and parent.node.name in DATE_HELPERS and child in parent.args):
            child = parent
            continue
        return False
    return False


def is_date_linear(ast: nodes.Template) -> bool:
    for node, chain in _walk(ast, ()):
        if isinstance(node, _BLOCKING):
            return False
        if isinstance(node, nodes.Name) and node.name == "data_timestamp":
            return False
        if isinstance(node, nodes.Name) and node.name in DATE_NAMES and not _value_position(node, chain):
            return False
        if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == _SCHED
                and not _value_position(node, chain)):
            return False
    return True


class SymbolicDate(str):
    """Stands for a date value while rendering symbolically; renders as its slot token. The renderer
    subclasses it together with its own date text class, so the token is marked like a real date."""

    slots: Slots
    fn: Callable[[datetime], str]


class Slots:
    """The date slots of one symbolic render: slot i computes its text from the data timestamp."""

    def __init__(self, cls: type[SymbolicDate]):
        self.cls = cls
        self.compute: list[Callable[[datetime], str]] = []

    def new(self, compute: Callable[[datetime], str]) -> SymbolicDate:
        self.compute.append(compute)
        sym = self.cls(f"{TOKEN_OPEN}{len(self.compute) - 1}{TOKEN_CLOSE}")
        sym.slots, sym.fn = self, compute
        return sym


def lift(helper: Callable[..., Any]) -> Callable[..., Any]:
    """A date helper that also accepts a symbolic date: the result is a new slot computing the same."""

    def lifted(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, SymbolicDate):
            fn = value.fn
            return value.slots.new(lambda ts: str(helper(fn(ts), *args, **kwargs)))
        return helper(value, *args, **kwargs)

    lifted.__name__ = getattr(helper, "__name__", "helper")
    lifted.__doc__ = helper.__doc__
    return lifted


class Filled:
    """A symbolic render split at its slots: `fill(ts)` builds the marked SQL of one instance."""

    def __init__(self, marked: str, slots: Slots):
        pieces = _TOKEN.split(marked)
        self.texts = pieces[0::2]
        self.compute = [slots.compute[int(i)] for i in pieces[1::2]]

    def fill(self, ts: datetime) -> str:
        out = [self.texts[0]]
        for compute, text in zip(self.compute, self.texts[1:], strict=True):
            out.append(compute(ts))
            out.append(text)
        return "".join(out)
