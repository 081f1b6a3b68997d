"""Turn a table and a data timestamp into checked engine SQL, fast.

Rendering runs per instance; everything sqlglot does runs once per *shape* (the rendered SQL with
its date values blanked out). Where the engine SQL differs from the rendered SQL (another dialect,
or a field selection pruning the projection), the shape is transformed once with unique placeholder
dates in the date slots, and each instance's SQL is that result with its own dates put back. When
placeholders cannot be made unambiguous the instance is transformed on its own: slower, never wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlglot

from ..errors import SpecError
from ..spec.model import Project, Table
from . import bounds
from .fields import field_signatures, linked_fields, prune_projection
from .functions import source_path_problem
from .located import sql_error, template_error
from .readsets import ReadSet, ShapeReads
from .sandbox import RenderingTime
from .sourcepaths import escaping_path
from .sqlcheck import ShapeCheck, SqlProblem, check_sql, partition_type
from .templates import (
    CompiledTemplate,
    RenderContext,
    Rendered,
    TemplateFailure,
    mark_values,
    quote_literal,
    strip_marks,
)
from .writtenout import WrittenOutRefused, check_written_out

__all__ = ["CompiledSql", "ProjectCompiler", "ReadSet", "fingerprint"]

_MARKED = re.compile("\ue000([^\ue001]*)\ue001")


def fingerprint(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class CompiledSql:
    sql: str  # engine SQL of the whole table's SELECT
    reads: tuple[str, ...]  # upstream tables (not itself: its own earlier partitions are in read_set)
    fingerprint: str
    read_set: ReadSet = ()  # (upstream table, inclusive ds ranges or "all"), by table name


def _placeholder(value: str, slot: int) -> str | None:
    """A date of the same form as `value` that cannot occur by accident: year 1600 + 4*slot."""
    m = re.fullmatch(r"(\d{4})([-]?\d{2}[-]?\d{2}.*)", value)
    if not m or slot > 99:
        return None
    return f"{1600 + 4 * slot:04d}{m.group(2)}"


class _Transform:
    """A shape's engine SQL with placeholders, to be filled per instance."""

    def __init__(self, text: str, placeholders: list[str]):
        self.text, self.placeholders = text, placeholders
        self._pattern = re.compile("|".join(re.escape(p) for p in placeholders)) if placeholders else None

    def fill(self, values: Sequence[str]) -> str:
        if self._pattern is None:
            return self.text
        lookup = dict(zip(self.placeholders, values, strict=True))
        return self._pattern.sub(lambda m: lookup[m.group(0)], self.text)


class ProjectCompiler:
    """Compiled templates plus the caches of one project. Pure: no I/O."""

    def __init__(self, project: Project):
        self.project = project
        self.errors: list[SpecError] = []
        self.templates: dict[str, CompiledTemplate] = {}
        self._checks: dict[tuple[str, str], ShapeCheck] = {}
        self._escaping: dict[str, str | None] = {}  # source path -> why it leads out of the source folders
        self._checking = 0.0  # CPU seconds spent checking SQL shapes (bounded like rendering)
        self._transforms: dict[tuple[str, str, tuple[str, ...]], _Transform | WrittenOutRefused | None] = {}
        self._signatures: dict[tuple[str, str], dict[str, Any]] = {}
        self._signatures_of: dict[str, str] = {}  # table -> write signature
        self._reads: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}
        self._read_sets = ShapeReads(project)
        self._rendering = RenderingTime()
        for name, table in sorted(project.tables.items()):
            try:
                self.templates[name] = CompiledTemplate(table, self.physical, self.source_ref, project.dialect)
            except TemplateFailure as exc:
                self.errors.append(template_error(table, exc, None))

    @property
    def engine_dialect(self) -> str:
        return self.project.engine.dialect

    def target_dialect(self, table: Table) -> str:
        """Integration tables are extracted from their sources by DuckDB, whatever the warehouse."""
        return "duckdb" if table.kind == "integration" else self.engine_dialect

    # --- names the templates resolve
    def physical(self, name: str) -> str:
        if name not in self.project.tables:
            import difflib

            from jinja2 import TemplateRuntimeError

            close = difflib.get_close_matches(name, list(self.project.tables), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "declare it in tables/"
            raise TemplateRuntimeError(f"ref('{name}'): unknown table; {hint}")
        return name

    def source_ref(self, path: str) -> str:
        problem = source_path_problem(path, self.project.sources) or self._escapes(path)
        if problem is not None:
            from jinja2 import TemplateRuntimeError

            raise TemplateRuntimeError(f"source('{path}'): {problem}")
        return quote_literal(path)

    def _escapes(self, path: str) -> str | None:
        """Why a source path leads out of its folder through a link on disk, or None (once per path:
        every instance of a table names the same files)."""
        if path not in self._escaping:
            self._escaping[path] = escaping_path(self.project.root, self.project.sources, path)
        return self._escaping[path]

    # --- per instance
    def render(self, table: Table, ts: datetime, params: Mapping[str, Any]) -> Rendered:
        ctx = RenderContext(ts, table.hourly, params)
        return self._rendering.run(table.name, lambda: self.templates[table.name].render(ctx))

    def check(self, table: Table, rendered: Rendered) -> ShapeCheck:
        key = (table.name, rendered.shape)
        found = self._checks.get(key)
        if found is None:
            if self._checking > bounds.MAX_TOTAL_SECONDS:  # like rendering: every date its own shape adds up
                return ShapeCheck((SqlProblem(
                    f"checking the SQL of every distinct shape took more than {bounds.MAX_TOTAL_SECONDS:g} s of CPU "
                    "time in all; render fewer distinct statements (a date in a name makes each date its own), or "
                    "plan fewer dates", 1, 1),))
            started = time.thread_time()
            found = check_sql(rendered.sql, table, self.project.tables, self.project.dialect,
                              self.target_dialect(table), self.project.allow_functions, self.project.sources,
                              self.ranged(table), self._escapes)
            self._checking += time.thread_time() - started
            self._checks[key] = dataclasses.replace(found, tree=None)  # a tree per shape held GBs: re-read if needed
        return found

    def compile(self, table: Table, ts: datetime, params: Mapping[str, Any], ds: str
                ) -> CompiledSql | list[SpecError]:
        """Render and check one instance: its engine SQL and fingerprint, or the errors."""
        try:
            rendered = self.render(table, ts, params)
        except TemplateFailure as exc:
            return [template_error(self.project.tables.get(exc.culprit or "", table), exc, ds)]
        check = self.check(table, rendered)
        if check.problems:
            return [sql_error(table, p, rendered.sql, ds) for p in check.problems]
        try:
            sql = rendered.sql if self.project.dialect == self.target_dialect(table) else \
                self.transformed(table, rendered, check, ())
        except WrittenOutRefused as refused:
            return [sql_error(table, refused.problem, rendered.sql, ds)]
        key = (check.reads, rendered.refs)
        reads = self._reads.get(key)
        if reads is None:
            reads = self._reads[key] = tuple(sorted((set(check.reads) | set(rendered.refs)) - {table.name}))
        return CompiledSql(sql, reads, self.fingerprint(table, sql), self._read_sets.read_set(table, rendered, check))

    def ranged(self, table: Table) -> bool:
        """The table's template selects a range of partitions (it uses start_ds / end_ds)."""
        template = self.templates.get(table.name)
        return bool(template is not None and template.ranged)

    def compile_range(self, table: Table, start: datetime, end: datetime, params: Mapping[str, Any]) -> str:
        """Engine SQL of a range template over a batch's first and last data timestamps (after
        `compile` of each of them succeeded: the range's shape is the one they were checked with)."""
        rendered = self.templates[table.name].render(RenderContext(start, table.hourly, params, start, end))
        if self.project.dialect == self.target_dialect(table):
            return rendered.sql
        return self._transform_text(rendered.sql, (), self.target_dialect(table))

    def fingerprint(self, table: Table, sql: str) -> str:
        """What an instance of `table` executing `sql` is recorded with: the SQL and the write definition."""
        return fingerprint(sql, self.write_signature(table))

    def write_signature(self, table: Table) -> str:
        """What the write depends on besides the SQL: columns and types, key, partition column."""
        found = self._signatures_of.get(table.name)
        if found is None:
            cols = ",".join(f"{f.name} {f.type}" for f in table.fields)
            found = f"{cols}|pk={','.join(table.primary_key)}|{table.partition} {partition_type(table)}"
            self._signatures_of[table.name] = found
        return found

    def transformed(self, table: Table, rendered: Rendered, check: ShapeCheck, keep: tuple[str, ...]) -> str:
        """Engine SQL of an instance, optionally pruned to the fields `keep`."""
        key = (table.name, rendered.shape, keep)
        dialect = self.target_dialect(table)
        if key not in self._transforms:
            try:
                self._transforms[key] = self._make_transform(rendered, keep, dialect)
            except WrittenOutRefused as refused:  # once per shape, not once per instance
                self._transforms[key] = refused
        transform = self._transforms[key]
        if isinstance(transform, WrittenOutRefused):
            raise transform
        if transform is None:
            return self._transform_text(rendered.sql, keep, dialect)
        return transform.fill(mark_values(rendered.marked))

    def _transform_text(self, sql: str, keep: tuple[str, ...], dialect: str) -> str:
        tree = sqlglot.parse_one(sql, read=self.project.dialect)
        if keep:
            tree = prune_projection(tree, keep)
        out = tree.sql(dialect=dialect)
        check_written_out(out, dialect, self.project.allow_functions, self.project.sources, self._escapes)
        return out

    def _make_transform(self, rendered: Rendered, keep: tuple[str, ...], dialect: str) -> _Transform | None:
        values = mark_values(rendered.marked)
        placeholders = [_placeholder(v, i) for i, v in enumerate(values)]
        if any(p is None for p in placeholders):
            return None
        phs = [p for p in placeholders if p is not None]
        slots = iter(phs)
        text = strip_marks(_MARKED.sub(lambda m: next(slots), rendered.marked))
        if any(text.count(p) != 1 for p in phs):
            return None
        out = self._transform_text(text, keep, dialect)
        if any(out.count(p) != 1 for p in phs):
            return None
        return _Transform(out, phs)

    # --- field selection
    def signatures(self, table: Table, rendered: Rendered, check: ShapeCheck) -> dict[str, Any]:
        key = (table.name, rendered.shape)
        if key not in self._signatures:
            tree = check.tree
            if tree is None and not check.problems:  # the cache keeps no tree: read the shape again
                tree = sqlglot.parse_one(rendered.sql, read=self.project.dialect)
            sigs: dict[str, Any] = {}
            if tree is not None and not check.has_table_functions:
                from sqlglot.optimizer.qualify import qualify

                schema: dict[str, object] = {n: {**{f.name: f.type for f in self.project.tables[n].fields},
                              self.project.tables[n].partition: partition_type(self.project.tables[n])}
                          for n in check.reads}
                qualified = qualify(tree.copy(), schema=schema, dialect=self.project.dialect,
                                    quote_identifiers=False, identify=False)
                sigs = field_signatures(qualified)
            self._signatures[key] = sigs
        return self._signatures[key]

    def field_selection(self, table: Table, ts: datetime, params: Mapping[str, Any], chosen: Sequence[str]
                        ) -> tuple[str, tuple[str, ...]]:
        """(pruned engine SQL, linked fields) for a field selection; call after `compile` succeeded."""
        rendered = self.render(table, ts, params)
        check = self.check(table, rendered)
        linked = tuple(linked_fields(self.signatures(table, rendered, check), chosen, table.primary_key))
        keep = tuple(f for f in table.field_names if f in table.primary_key or f in chosen or f in linked)
        return self.transformed(table, rendered, check, keep), linked
