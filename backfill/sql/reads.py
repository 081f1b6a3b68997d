"""Read sets: which partitions of which upstream table a SELECT reads, inferred from its predicates.

Two steps, so that sqlglot runs once per SQL *shape*:

- `infer_reads(tree, partitions)` walks the query's scopes (`sqlglot.optimizer.scope`) and, per
  table reference (through aliases, CTEs, subqueries and joins), collects the predicates on that
  table's partition column into a small formula (`Cmp`, `All`, `Any`; `TRUE` = no usable predicate).
  Literal texts are kept as written: in a shape they hold placeholder dates.
- `evaluate(formula, hourly, fill)` turns a formula into partition intervals for one instance,
  `fill` putting the instance's own date values back into the literal texts.

Understood: `=`, `IN`, `BETWEEN`, `<`, `<=`, `>`, `>=`, AND / OR (NOT and anything else read as
"unknown", which widens the read, never narrows it), DATE / TIMESTAMP literals, casts on either side,
strings compared with dates ('2026-07-01', '20260701', '2026-07-01 05:00:00'), `± INTERVAL n DAY|HOUR`,
`a.ds = b.ds` equalities, and predicates on a derived table's column that is its source's partition.
A formula that says nothing about the partition column reads every partition ("all").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, build_scope

__all__ = ["All", "Any_", "Cmp", "TRUE", "Formula", "as_ranges", "conjunction", "conjunction_ranges", "evaluate",
           "infer_reads", "parse_moment"]


@dataclass(frozen=True)
class Cmp:
    op: str  # eq, lt, le, gt, ge
    text: str  # the literal as written (placeholders filled per instance)
    unit: str = ""  # "day" when the partition column is cast to DATE; "" = the table's own granularity
    shift_hours: int = 0  # from `± INTERVAL`
    day_value: bool = False  # the literal is cast to DATE: its time of day is dropped


@dataclass(frozen=True)
class All:
    parts: tuple[Formula, ...]


@dataclass(frozen=True)
class Any_:
    parts: tuple[Formula, ...]


@dataclass(frozen=True)
class _True:
    pass


TRUE = _True()
Formula = Cmp | All | Any_ | _True
_FLIP = {"eq": "eq", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
_OPS: dict[type[exp.Expr], str] = {exp.EQ: "eq", exp.LT: "lt", exp.LTE: "le", exp.GT: "gt", exp.GTE: "ge"}


def conj(parts: list[Formula]) -> Formula:
    kept = tuple(dict.fromkeys(p for p in parts if p is not TRUE))
    return TRUE if not kept else kept[0] if len(kept) == 1 else All(kept)


def disj(parts: list[Formula]) -> Formula:
    if not parts or any(p is TRUE for p in parts):
        return TRUE
    kept = tuple(dict.fromkeys(parts))
    return kept[0] if len(kept) == 1 else Any_(kept)


# ------------------------------------------------------------------------------------------ inference
Target = tuple[str, str]  # (source alias, column name)


def _strip_cast(node: exp.Expr) -> tuple[exp.Expr, str]:
    """The expression under casts, and "day" when one of them casts to DATE."""
    unit = ""
    while isinstance(node, exp.Cast | exp.TryCast | exp.Paren):
        if isinstance(node, exp.Cast | exp.TryCast) and node.to.this == exp.DataType.Type.DATE:
            unit = "day"
        node = node.this
    return node, unit


def _value(node: exp.Expr) -> tuple[str, int, bool] | None:
    """(literal text, shift in hours, cast to DATE) of a constant date or timestamp expression."""
    if isinstance(node, exp.Add | exp.Sub) and isinstance(node.expression, exp.Interval):
        base = _value(node.this)
        iv = node.expression
        unit = str(iv.args.get("unit") and iv.unit).upper().rstrip("S")
        try:
            n = int(str(iv.this.name if isinstance(iv.this, exp.Literal) else ""))
        except ValueError:
            return None
        hours = {"DAY": 24 * n, "HOUR": n, "WEEK": 24 * 7 * n}.get(unit)
        if base is None or hours is None:
            return None
        return base[0], base[1] + (hours if isinstance(node, exp.Add) else -hours), base[2]
    inner, unit = _strip_cast(node)
    if isinstance(inner, exp.Literal) and inner.is_string:
        return inner.name, 0, unit == "day"
    return None


def _column(node: exp.Expr) -> tuple[Target, str] | None:
    inner, unit = _strip_cast(node)
    if isinstance(inner, exp.Column) and isinstance(inner.this, exp.Identifier):
        return (inner.table, inner.name), unit
    return None


def _formula(cond: exp.Expr | None, target: Target) -> Formula:
    """What `cond` says about the column `target` (TRUE: nothing usable)."""
    if cond is None:
        return TRUE
    if isinstance(cond, exp.Paren):
        return _formula(cond.this, target)
    if isinstance(cond, exp.And):
        return conj([_formula(c, target) for c in cond.flatten()])
    if isinstance(cond, exp.Or):
        return disj([_formula(c, target) for c in cond.flatten()])
    if isinstance(cond, exp.Between):
        col = _column(cond.this)
        low, high = _value(cond.args["low"]), _value(cond.args["high"])
        if col and col[0] == target and low and high:
            return conj([Cmp("ge", low[0], col[1], low[1], low[2]), Cmp("le", high[0], col[1], high[1], high[2])])
        return TRUE
    if isinstance(cond, exp.In) and not cond.args.get("query"):
        col = _column(cond.this)
        values = [_value(v) for v in cond.expressions]
        if col and col[0] == target and values and all(values):
            return disj([Cmp("eq", v[0], col[1], v[1], v[2]) for v in values if v])
        return TRUE
    op = _OPS.get(type(cond))
    if op is None:
        return TRUE
    for left, right, how in ((cond.this, cond.expression, op), (cond.expression, cond.this, _FLIP[op])):
        col, val = _column(left), _value(right)
        if col and col[0] == target and val:
            return Cmp(how, val[0], col[1], val[1], val[2])
    return TRUE


def _equalities(cond: exp.Expr | None) -> list[tuple[Target, Target]]:
    """`a.x = b.y` among the top-level conjuncts of `cond`."""
    if cond is None:
        return []
    out = []
    for c in cond.flatten() if isinstance(cond, exp.And) else [cond]:
        if isinstance(c, exp.EQ):
            a, b = _column(c.this), _column(c.expression)
            if a and b and not a[1] and not b[1]:
                out.append((a[0], b[0]))
    return out


def _conditions(select: exp.Expr, alias: str) -> list[exp.Expr]:
    """The conditions that restrict the rows read from the source `alias` of a SELECT: the WHERE,
    and the ON of inner joins, of a LEFT JOIN of `alias`, of a RIGHT JOIN of another source."""
    out = [w.this for w in [select.args.get("where")] if w is not None]
    for join in select.args.get("joins") or []:
        on = join.args.get("on")
        side, joined = (join.side or "").upper(), join.this.alias_or_name
        if on is not None and (not side or (side == "LEFT") == (joined == alias)) and side != "FULL":
            out.append(on)
    return out


def _pushable(select: exp.Expr) -> bool:
    """A derived table whose rows of one partition come from that partition only: no window, limit."""
    if not isinstance(select, exp.Select) or select.args.get("limit") or select.args.get("offset"):
        return False
    return not any(isinstance(s.unalias(), exp.Expr) and s.find(exp.Window) for s in select.selects)


def _scope_reads(scope: Scope, pushed: Mapping[str, Formula], partitions: Mapping[str, str],
                 out: dict[str, list[Formula]]) -> None:
    select = scope.expression
    outer: dict[Target, list[Formula]] = {}
    if isinstance(select, exp.SetOperation):  # a derived table's constraints hold in every branch
        left: exp.Expr = select
        while isinstance(left, exp.SetOperation):
            left = left.left
        names = [s.alias_or_name for s in left.selects] if isinstance(left, exp.Select) else []
        for branch in scope.set_operation_scopes:
            b = branch.expression
            mine = [s.alias_or_name for s in b.selects] if isinstance(b, exp.Select) else []
            _scope_reads(branch, {m: pushed[n] for n, m in zip(names, mine, strict=False) if n in pushed},
                         partitions, out)
        return
    if pushed and isinstance(select, exp.Select) and _pushable(select):
        for s in select.selects:
            f = pushed.get(s.alias_or_name)
            col = _column(s.unalias()) if f is not None else None
            if f is not None and col is not None and not col[1]:
                outer.setdefault(col[0], []).append(f)
    single = next(iter(scope.selected_sources)) if len(scope.selected_sources) == 1 else None
    for alias, (_node, source) in scope.selected_sources.items():
        conds = _conditions(select, alias) if isinstance(select, exp.Select) else []
        equal: dict[Target, list[Target]] = {}
        for c in conds:
            for one, two in _equalities(c):
                equal.setdefault(one, []).append(two)
                equal.setdefault(two, []).append(one)

        def about(column: str, alias: str = alias, conds: list[exp.Expr] = conds,
                  equal: dict[Target, list[Target]] = equal) -> Formula:
            names = [(alias, column)] + ([("", column)] if alias == single else [])
            parts = [_formula(c, t) for c in conds for t in names]
            for t in names:  # a.ds = b.ds: what is said of b.ds holds for a.ds
                parts += [_formula(c, other) for other in equal.get(t, []) for c in conds]
                parts += outer.get(t, [])
            return conj(parts)

        if isinstance(source, exp.Table):
            partition = partitions.get(source.name)
            if partition is not None:
                out.setdefault(source.name, []).append(about(partition))
        elif isinstance(source, Scope):
            names = [s.alias_or_name for s in source.expression.selects] if isinstance(
                source.expression, exp.Select) else []
            _scope_reads(source, {n: f for n in names if (f := about(n)) is not TRUE}, partitions, out)
    for sub in [*scope.subquery_scopes, *scope.udtf_scopes]:
        _scope_reads(sub, {}, partitions, out)


def infer_reads(tree: exp.Expr, partitions: Mapping[str, str]) -> dict[str, Formula]:
    """table -> formula over its partition column, for every table of `partitions` the query reads.

    `partitions`: declared table name -> its partition column. Best with a qualified tree (columns
    carry their table alias); an unqualified column counts for the only source of its scope."""
    root = build_scope(tree)
    out: dict[str, list[Formula]] = {}
    if root is not None:
        _scope_reads(root, {}, partitions, out)
    found = {t: disj(fs) for t, fs in out.items()}
    for t in tree.find_all(exp.Table):  # a reference the scopes did not reach: read whole
        if t.name in partitions and t.name not in found:
            found[t.name] = TRUE
    return found


# ------------------------------------------------------------------------------------------ evaluation
Interval = tuple[int | None, int | None]  # inclusive, in days (toordinal) or hours; None = unbounded
_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H",
            "%Y-%m-%d %H", "%Y%m%d%H", "%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S.%f")


@lru_cache(maxsize=65536)
def parse_moment(text: str) -> datetime | None:
    for f in _FORMATS:
        try:
            return datetime.strptime(text.strip(), f)
        except ValueError:
            continue
    return None


def _cmp_interval(c: Cmp, hourly: bool, fill: Callable[[str], str]) -> list[Interval] | None:
    found = _interval(c.op, fill(c.text), c.unit, c.shift_hours, c.day_value, hourly)
    return None if found is None else [found]


@lru_cache(maxsize=65536)
def _interval(op: str, text: str, unit: str, shift_hours: int, day_value: bool, hourly: bool) -> Interval | None:
    moment = parse_moment(text)
    if moment is None:
        return None
    if day_value:
        moment = datetime.combine(moment.date(), datetime.min.time())
    hours = moment.toordinal() * 24 + moment.hour + shift_hours
    exact = moment.minute == 0 and moment.second == 0 and moment.microsecond == 0
    per = 1 if hourly and unit != "day" else 24
    floor, exact = divmod(hours, per)[0], exact and hours % per == 0
    lo: int | None
    hi: int | None
    lo, hi = {"eq": (floor, floor), "ge": (floor if exact else floor + 1, None), "gt": (floor + 1, None),
              "le": (None, floor), "lt": (None, floor - 1 if exact else floor)}[op]
    if hourly and per == 24:  # a DATE bound on an hourly partition: every hour of those days
        lo, hi = (None if lo is None else lo * 24), (None if hi is None else hi * 24 + 23)
    return (lo, hi)


def conjunction(f: Formula) -> list[Cmp] | None:
    """The comparisons of a plain conjunction (the usual `=` or BETWEEN), None for anything else."""
    if f is TRUE:
        return []
    if isinstance(f, Cmp):
        return [f]
    if isinstance(f, All) and all(isinstance(p, Cmp) for p in f.parts):
        return [p for p in f.parts if isinstance(p, Cmp)]
    return None


def conjunction_ranges(cmps: list[tuple[Cmp, str]], hourly: bool) -> tuple[tuple[str | None, str | None], ...] | str:
    """`as_ranges(evaluate(...))` of a conjunction whose literals are filled in already, faster."""
    lo: int | None = None
    hi: int | None = None
    for c, text in cmps:
        iv = _interval(c.op, text, c.unit, c.shift_hours, c.day_value, hourly)
        if iv is None:
            continue
        if iv[0] is not None and (lo is None or iv[0] > lo):
            lo = iv[0]
        if iv[1] is not None and (hi is None or iv[1] < hi):
            hi = iv[1]
    if lo is None and hi is None:
        return "all"
    if lo is not None and hi is not None and lo > hi:
        return ()
    return ((None if lo is None else _ds(lo, hourly), None if hi is None else _ds(hi, hourly)),)


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out = []
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo = lo2 if lo1 is None else lo1 if lo2 is None else max(lo1, lo2)
            hi = hi2 if hi1 is None else hi1 if hi2 is None else min(hi1, hi2)
            if lo is None or hi is None or lo <= hi:
                out.append((lo, hi))
    return _union(out)


def _union(parts: list[Interval]) -> list[Interval]:
    key = sorted(parts, key=lambda iv: -10**12 if iv[0] is None else iv[0])
    out: list[Interval] = []
    for lo, hi in key:
        if out:
            plo, phi = out[-1]
            if phi is None or (lo is not None and lo <= phi + 1):
                out[-1] = (plo, None if phi is None or hi is None else max(phi, hi))
                continue
        out.append((lo, hi))
    return out


def evaluate(f: Formula, hourly: bool, fill: Callable[[str], str]) -> list[Interval]:
    """The partitions `f` lets through, as sorted disjoint intervals ([(None, None)]: all)."""
    if isinstance(f, Cmp):
        found = _cmp_interval(f, hourly, fill)
        return [(None, None)] if found is None else found
    if isinstance(f, All):
        acc: list[Interval] = [(None, None)]
        for p in f.parts:
            acc = _intersect(acc, evaluate(p, hourly, fill))
        return acc
    if isinstance(f, Any_):
        return _union([iv for p in f.parts for iv in evaluate(p, hourly, fill)])
    return [(None, None)]


@lru_cache(maxsize=262144)
def _ds(n: int, hourly: bool) -> str:
    if hourly:
        day, hour = divmod(n, 24)
        return f"{datetime.fromordinal(day):%Y-%m-%d}T{hour:02d}"
    return f"{datetime.fromordinal(n):%Y-%m-%d}"


def as_ranges(intervals: list[Interval], hourly: bool) -> tuple[tuple[str | None, str | None], ...] | str:
    """Intervals as inclusive ranges of partition ds texts (None: unbounded), or "all"."""
    if intervals == [(None, None)]:
        return "all"
    return tuple((None if lo is None else _ds(lo, hourly), None if hi is None else _ds(hi, hourly))
                 for lo, hi in intervals)
