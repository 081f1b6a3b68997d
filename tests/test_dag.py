"""The dependency graph: cycles reported as a path, deterministic dependency order, downstream closure."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest

from backfill.errors import SpecErrors
from backfill.plan.dag import downstream_of, find_cycle, topological_order
from backfill.plan.validate import validate_project


def test_cycle_path() -> None:
    # table -> the tables it reads
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]


def test_cycle_path_starts_deterministically_whatever_the_insertion_order() -> None:
    edges = {"c": ["a"], "b": ["c"], "a": ["b"], "z": []}
    assert find_cycle(edges) == ["a", "b", "c", "a"]


def test_cycle_inside_a_larger_graph_is_only_the_cycle() -> None:
    edges = {"root": ["x"], "x": ["y"], "y": ["z"], "z": ["x"], "other": ["root"]}
    assert find_cycle(edges) == ["x", "y", "z", "x"]


def test_self_read_is_a_cycle() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_no_cycle() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"], "d": ["c", "b"]}) is None
    assert find_cycle({}) is None


def test_diamond_is_not_a_cycle() -> None:
    assert find_cycle({"top": ["l", "r"], "l": ["base"], "r": ["base"], "base": []}) is None


EDGES = {"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": ["c", "d"], "f": ["e"], "x": ["d"], "z": []}


def test_topological_order_puts_upstream_first_ties_by_name() -> None:
    order = topological_order(EDGES, EDGES)
    assert order == ["a", "b", "c", "d", "e", "f", "x", "z"]
    pos = {t: i for i, t in enumerate(order)}
    for node, ups in EDGES.items():
        assert all(pos[u] < pos[node] for u in ups)


def test_topological_order_is_deterministic() -> None:
    expected = topological_order(EDGES, EDGES)
    rng = random.Random(7)
    for _ in range(20):
        items = list(EDGES.items())
        rng.shuffle(items)
        shuffled = {k: list(reversed(v)) for k, v in items}
        nodes = list(EDGES)
        rng.shuffle(nodes)
        assert topological_order(nodes, shuffled) == expected


def test_topological_order_of_a_subset_keeps_indirect_order() -> None:
    # f and b are ordered through e, c although those are not wanted
    assert topological_order(["f", "b"], EDGES) == ["b", "f"]
    assert topological_order(["x", "c", "a"], EDGES) == ["a", "c", "x"]


def test_downstream_closure_depth_and_exclude() -> None:
    assert downstream_of(["a"], EDGES) == {"a": 0, "b": 1, "d": 1, "c": 2, "e": 2, "x": 2, "f": 3}
    assert set(downstream_of(["a"], EDGES, depth=1)) == {"a", "b", "d"}
    assert set(downstream_of(["a"], EDGES, exclude=["d"])) == {"a", "b", "c", "e", "f"}
    assert set(downstream_of(["a"], EDGES, exclude=["b", "d"])) == {"a"}
    assert set(downstream_of(["z"], EDGES)) == {"z"}
    assert downstream_of(["c", "d"], EDGES) == {"c": 0, "d": 0, "e": 1, "x": 1, "f": 2}


# ---------------------------------------------------------------- through a project

def _project(root: Path, reads: dict[str, list[str]], declared: dict[str, list[str]] | None = None) -> Path:
    (root / "tables").mkdir(parents=True)
    (root / "backfills").mkdir()
    (root / "project.yaml").write_text("name: t\n")
    for name, ups in reads.items():
        if ups:
            sql = f"SELECT t0.id FROM {{{{ ref('{ups[0]}') }}}} AS t0\n"
            for k, up in enumerate(ups[1:], start=1):
                sql += f"JOIN {{{{ ref('{up}') }}}} AS t{k} ON t{k}.id = t0.id\n"
        else:
            sql = "SELECT 1 AS id\n"
        doc = f"name: {name}\nkind: fact\nfields: [{{name: id, type: BIGINT}}]\n"
        if declared and name in declared:
            doc += f"depends_on: [{', '.join(declared[name])}]\n"
        doc += "sql_inline: |\n" + "".join("  " + line + "\n" for line in sql.splitlines())
        (root / "tables" / f"{name}.yaml").write_text(doc)
    return root


def test_a_cycle_in_a_project_is_reported_with_its_path(tmp_path: Path) -> None:
    root = _project(tmp_path, {"a": ["b"], "b": ["c"], "c": ["a"], "s": []})
    with pytest.raises(SpecErrors) as info:
        validate_project(root, today=date(2026, 7, 2))
    (err,) = info.value.errors
    assert err.message.startswith("dependency cycle")
    assert ": a -> b -> c -> a; break it by removing one read" in err.message
    assert err.file == "tables/a.yaml" and err.table == "a"
    assert err.line == 5  # where a's template reads b


def test_declared_depends_on_must_agree_with_the_sql(tmp_path: Path) -> None:
    root = _project(tmp_path, {"a": [], "b": ["a"], "c": ["b"]}, declared={"c": ["a", "b"]})
    with pytest.raises(SpecErrors) as info:
        validate_project(root, today=date(2026, 7, 2))
    (err,) = info.value.errors
    assert err.file == "tables/c.yaml"
    assert "depends_on lists a which the SQL does not read" in err.message


def test_project_plans_follow_the_dependency_order(tmp_path: Path) -> None:
    root = _project(tmp_path, {"zz": [], "mm": ["zz"], "aa": ["mm"], "bb": ["zz", "aa"]})
    (root / "backfills" / "bf.yaml").write_text(
        "name: bf\ntargets: [{table: bb}, {table: aa}, {table: zz}, {table: mm}]\ndata_timestamp: 2026-07-01\n")
    validated = validate_project(root, today=date(2026, 7, 2))
    assert validated.graph == {"aa": ("mm",), "bb": ("aa", "zz"), "mm": ("zz",), "zz": ()}
    (plan,) = validated.plans
    assert plan.tables == ("zz", "mm", "aa", "bb")
