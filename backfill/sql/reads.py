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

from collections.abc import Mapping

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, build_scope

from .readranges import (
    TRUE,
    All,
    Any_,
    Cmp,
    Formula,
    as_ranges,
    conj,
    conjunction,
    conjunction_ranges,
    disj,
    evaluate,
    parse_moment,
)

__all__ = ["All", "Any_", "Cmp", "TRUE", "Formula", "as_ranges", "conjunction", "conjunction_ranges", "evaluate",
           "infer_reads", "parse_moment"]


# ------------------------------------------------------------------------------------------ inference
_FLIP = {"eq": "eq", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
_OPS: dict[type[exp.Expr], str] = {exp.EQ: "eq", exp.LT: "lt", exp.LTE: "le", exp.GT: "gt", exp.GTE: "ge"}
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
    """A derived table whose rows of one partition come from that partition only. Not so where rows are
    picked or computed across partitions: a window, QUALIFY, DISTINCT ON, LIMIT or OFFSET."""
    if not isinstance(select, exp.Select) or any(select.args.get(k) for k in ("limit", "offset", "qualify")):
        return False
    distinct = select.args.get("distinct")
    if isinstance(distinct, exp.Distinct) and distinct.args.get("on"):
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
