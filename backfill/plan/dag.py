"""The table dependency graph: cycles, dependency order, downstream closure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["find_cycle", "topological_order", "downstream_of"]


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as a path [a, b, ..., a] following `table -> its upstream`, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for up in sorted(edges.get(node, ())):
            if state.get(up) == 1:
                return stack[stack.index(up):] + [up]
            if up not in state:
                found = visit(up)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def topological_order(nodes: Iterable[str], edges: Mapping[str, Iterable[str]]) -> list[str]:
    """`nodes` ordered so every node comes after its upstream nodes (ties by name: deterministic)."""
    wanted = set(nodes)
    order: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        done.add(node)
        for up in sorted(edges.get(node, ())):
            visit(up)
        if node in wanted:
            order.append(node)

    for node in sorted(wanted):
        visit(node)
    return order


def downstream_of(
    roots: Iterable[str], edges: Mapping[str, Iterable[str]], depth: int | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, int]:
    """Every table depending on `roots` (with its distance), up to `depth` levels, minus `exclude`.

    Excluded tables are not traversed either: what depends only on them is not added."""
    excluded = set(exclude)
    children: dict[str, set[str]] = {}
    for node, ups in edges.items():
        for up in ups:
            children.setdefault(up, set()).add(node)
    found: dict[str, int] = {r: 0 for r in roots}
    frontier = list(found)
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        nxt = []
        for node in frontier:
            for child in sorted(children.get(node, ())):
                if child in excluded or child in found:
                    continue
                found[child] = level
                nxt.append(child)
        frontier = nxt
    return found
