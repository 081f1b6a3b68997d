"""The table graph of a project: what each table reads, learned by rendering every template once.

`project_graph` also checks what the graph needs: declared `depends_on` agree with the SQL, no table
reads its own partition, no cycle among tables. `ds_text` is how a data timestamp names a partition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from ..errors import SpecError
from ..spec.model import Project, Table
from ..sql.compiler import ProjectCompiler
from ..sql.templates import fmt_date
from .dag import find_cycle
from .lineage import in_ranges

__all__ = ["ds_text", "project_graph", "read_location"]


def ds_text(ts: datetime, hourly: bool) -> str:
    return fmt_date(ts, "%Y-%m-%dT%H" if hourly else "%Y-%m-%d")


def project_graph(compiler: ProjectCompiler, at: datetime, params: Mapping[str, object]
                  ) -> tuple[dict[str, tuple[str, ...]], list[SpecError]]:
    """table -> tables it reads, from rendering every template once at `at`, plus declared depends_on."""
    graph: dict[str, tuple[str, ...]] = {}
    errors: list[SpecError] = []
    for name, table in sorted(compiler.project.tables.items()):
        if name not in compiler.templates:
            graph[name] = table.depends_on or ()
            continue
        ds = ds_text(at, table.hourly)
        compiled = compiler.compile(table, at, {**compiler.project.params, **params}, ds)
        for other in _backfill_params(compiler.project, params):  # a param may be given by a backfill only
            if not isinstance(compiled, list):
                break
            retry = compiler.compile(table, at, {**compiler.project.params, **other}, ds)
            compiled = retry if not isinstance(retry, list) else compiled
        if isinstance(compiled, list):
            errors.extend(compiled)
            graph[name] = table.depends_on or ()
            continue
        graph[name] = compiled.reads
        own = dict(compiled.read_set).get(name)
        if own is not None and in_ranges(ds, own):
            file, line, col = read_location(table, name)
            errors.append(SpecError(
                f"table '{name}' reads its own partition {ds} (partition cycle: {name} {ds} -> {ds}); it may "
                "read only its other partitions, e.g. `ds = DATE '{{ ds_add(ds, -1) }}'`",
                file=file, line=line, col=col, table=name))
        if table.depends_on is not None and set(table.depends_on) != set(compiled.reads):
            errors.append(_depends_on_error(table, compiled.reads))
    cycle = find_cycle(graph)
    if cycle:
        first = compiler.project.tables[cycle[0]]
        file, line, col = read_location(first, cycle[1])
        errors.append(SpecError("dependency cycle (A -> B: A reads B): " + " -> ".join(cycle)
                                + "; break it by removing one read", file=file, line=line, col=col,
                                table=first.name))
    return graph, errors


def read_location(table: Table, name: str) -> tuple[str, int, int]:
    """Where `table`'s template first names the table `name`; its spec file if it does not."""
    t = table.template
    pattern = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])")
    for n, text in enumerate(t.source.splitlines(), start=1):
        m = pattern.search(text)
        if m:
            return (t.file, *t.at(n, m.start() + 1))
    return table.spec_file, 1, 1


def _backfill_params(project: Project, tried: Mapping[str, object]) -> list[Mapping[str, object]]:
    """The distinct params of the project's backfills, by backfill key, except those already tried."""
    out: list[Mapping[str, object]] = []
    for _, spec in sorted(project.backfills.items()):
        if spec.params and dict(spec.params) != dict(tried) and spec.params not in out:
            out.append(spec.params)
    return out


def _depends_on_error(table: Table, reads: Iterable[str]) -> SpecError:
    declared, actual = set(table.depends_on or ()), set(reads)
    parts = []
    if actual - declared:
        parts.append("the SQL reads " + ", ".join(sorted(actual - declared)) + " not listed in depends_on")
    if declared - actual:
        parts.append("depends_on lists " + ", ".join(sorted(declared - actual)) + " which the SQL does not read")
    fix = "list exactly the tables the SQL reads, or drop depends_on to infer them"
    line, col = table.positions.get("depends_on", (1, 1))
    return SpecError("; ".join(parts) + "; " + fix, file=table.spec_file, line=line, col=col, table=table.name,
                     key_path=("depends_on",))
