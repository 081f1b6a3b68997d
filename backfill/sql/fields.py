"""Column lineage of a table's SELECT: which fields share logic, and pruning to chosen fields."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, build_scope

__all__ = ["field_signatures", "linked_fields", "prune_projection"]

Signature = tuple[frozenset[str], frozenset[str]]


def _leaves(column: exp.Column, scope: Scope, filters: set[str], seen: set[int]) -> set[str]:
    source = scope.sources.get(column.table)
    if isinstance(source, Scope):
        if id(source) in seen:
            return set()
        seen.add(id(source))
        where = source.expression.args.get("where")
        if where is not None:
            filters.add(where.sql())
        out: set[str] = set()
        for sel in _selects(source.expression):
            if sel.alias_or_name == column.name:
                for col in sel.find_all(exp.Column):
                    out |= _leaves(col, source, filters, seen)
        seen.discard(id(source))
        return out
    if isinstance(source, exp.Table):
        return {f"{source.name}.{column.name}"}
    return {column.sql()}


def _selects(node: exp.Expr) -> list[exp.Expr]:
    return list(node.selects) if isinstance(node, exp.Query) else []


def field_signatures(tree: exp.Expr) -> dict[str, Signature]:
    """For each output field of a qualified SELECT: (source columns it reads, filters on its path)."""
    root = build_scope(tree)
    if root is None:
        return {}
    where = tree.args.get("where")
    out: dict[str, Signature] = {}
    for sel in _selects(tree):
        filters: set[str] = {where.sql()} if where is not None else set()
        inputs: set[str] = set()
        for col in sel.find_all(exp.Column):
            inputs |= _leaves(col, root, filters, set())
        out[sel.alias_or_name] = (frozenset(inputs), frozenset(filters))
    return out


def linked_fields(signatures: dict[str, Signature], chosen: Sequence[str], keys: Sequence[str]) -> list[str]:
    """Fields not chosen that have the same inputs and filters as a chosen field."""
    wanted = {signatures[c] for c in chosen if c in signatures}
    return [name for name, sig in signatures.items()
            if name not in chosen and name not in keys and sig in wanted and sig[0]]


def prune_projection(tree: exp.Expr, keep: Sequence[str]) -> exp.Expr:
    """A copy of the SELECT whose outer projection holds only `keep` (in the original order)."""
    pruned = tree.copy()
    if isinstance(pruned, exp.Select):
        pruned.set("expressions", [s for s in pruned.selects if s.alias_or_name in keep])
    return pruned
