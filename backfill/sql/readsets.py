"""Read sets of instances: formulas inferred once per SQL shape (reads.py), evaluated per instance.

A shape is parsed once with unique placeholder dates in its date slots (like the compiler's
transforms); each instance's read set is its formulas evaluated with its own dates put back. When
placeholders cannot be made unambiguous, the instance's own SQL is analysed: slower, never wrong.
"""

from __future__ import annotations

import re
from typing import Any

import sqlglot
from sqlglot.errors import SqlglotError

from ..spec.model import Project, Table
from .reads import TRUE, Cmp, Formula, as_ranges, conjunction, conjunction_ranges, evaluate, infer_reads
from .sqlcheck import ShapeCheck, partition_type
from .templates import Rendered, mark_values, strip_marks

__all__ = ["ReadSet", "ShapeReads", "read_set_json", "read_set_of"]

# (upstream table, inclusive ranges of its partition ds texts (None: unbounded) or "all"), by table
ReadSet = tuple[tuple[str, "tuple[tuple[str | None, str | None], ...] | str"], ...]
_MARKED = re.compile("\ue000([^\ue001]*)\ue001")


def read_set_json(reads: ReadSet) -> dict[str, object]:
    """The ledger's and the plan's form: {"table": [["2026-07-01", "2026-07-07"]]} or {"table": "all"}."""
    return {t: r if isinstance(r, str) else [list(x) for x in r] for t, r in reads}


def read_set_of(doc: dict[str, Any]) -> ReadSet:
    """The inverse of `read_set_json`."""
    return tuple((t, r if isinstance(r, str) else tuple((x[0], x[1]) for x in r)) for t, r in sorted(doc.items()))


def _placeholder(value: str, slot: int) -> str | None:
    m = re.fullmatch(r"(\d{4})([-]?\d{2}[-]?\d{2}.*)", value)
    if not m or slot > 99:
        return None
    return f"{1600 + 4 * slot:04d}{m.group(2)}"


class ShapeReads:
    def __init__(self, project: Project):
        self.project = project
        self._shapes: dict[tuple[str, str], tuple[dict[str, Formula] | None, tuple[str, ...]]] = {}
        self._fast: dict[tuple[str, str], list[tuple[str, bool, list[tuple[Cmp, int]] | None]]] = {}

    def read_set(self, table: Table, rendered: Rendered, check: ShapeCheck) -> ReadSet:
        if not check.reads:
            return ()
        key = (table.name, rendered.shape)
        found = self._shapes.get(key)
        if found is None:
            found = self._shapes[key] = self._infer_reads(rendered, check)
        formulas, placeholders = found
        tables = self.project.tables
        if formulas is None:  # no unambiguous placeholders: this instance on its own
            formulas = self._infer_on(rendered.sql, check)
            lookup: dict[str, str] = {}
        else:
            values = mark_values(rendered.marked)
            fast = self._fast.get(key)
            if fast is None:
                fast = self._fast[key] = self._conjunctions(formulas, placeholders, check)
            if all(cmps is not None for _n, _h, cmps in fast):
                return tuple((name, conjunction_ranges(
                    [(c, c.text if slot < 0 else c.text.replace(placeholders[slot], values[slot]))
                     for c, slot in cmps or ()], hourly)) for name, hourly, cmps in fast)
            lookup = dict(zip(placeholders, values, strict=True))

        def fill(text: str) -> str:
            for ph, value in lookup.items():
                if ph in text:
                    text = text.replace(ph, value)
            return text

        return tuple((name, as_ranges(evaluate(formulas.get(name, TRUE), tables[name].hourly, fill),
                                      tables[name].hourly)) for name in check.reads if name in tables)

    def _conjunctions(self, formulas: dict[str, Formula], placeholders: tuple[str, ...], check: ShapeCheck
                      ) -> list[tuple[str, bool, list[tuple[Cmp, int]] | None]]:
        """Per table read, its comparisons with the one placeholder each holds (-1: none), when the
        formula is a plain conjunction and no literal holds two placeholders; else None (general path)."""
        out: list[tuple[str, bool, list[tuple[Cmp, int]] | None]] = []
        for name in check.reads:
            if name not in self.project.tables:
                continue
            hourly = self.project.tables[name].hourly
            cmps = conjunction(formulas.get(name, TRUE))
            slots = [[n for n, ph in enumerate(placeholders) if ph in c.text] for c in cmps or []]
            if cmps is None or any(len(s) > 1 for s in slots):
                out.append((name, hourly, None))
            else:
                out.append((name, hourly, [(c, s[0] if s else -1) for c, s in zip(cmps, slots, strict=True)]))
        return out

    def _infer_reads(self, rendered: Rendered, check: ShapeCheck
                     ) -> tuple[dict[str, Formula] | None, tuple[str, ...]]:
        values = mark_values(rendered.marked)
        placeholders = [_placeholder(v, i) for i, v in enumerate(values)]
        if any(p is None for p in placeholders):
            return None, ()
        phs = [p for p in placeholders if p is not None]
        slots = iter(phs)
        text = strip_marks(_MARKED.sub(lambda m: next(slots), rendered.marked))
        if any(text.count(p) != 1 for p in phs) or any(v in p for p in phs for v in values):
            return None, ()
        return self._infer_on(text, check), tuple(phs)

    def _infer_on(self, sql: str, check: ShapeCheck) -> dict[str, Formula]:
        tables = self.project.tables
        tree = sqlglot.parse_one(sql, read=self.project.dialect)
        schema: dict[str, object] = {n: {**{f.name: f.type for f in tables[n].fields},
                                         tables[n].partition: partition_type(tables[n])} for n in check.reads}
        try:
            from sqlglot.optimizer.qualify import qualify

            tree = qualify(tree, schema=schema, dialect=self.project.dialect, quote_identifiers=False,
                           identify=False, validate_qualify_columns=False)
        except SqlglotError:
            pass  # unqualified columns still count for the only source of their scope
        return infer_reads(tree, {n: tables[n].partition for n in check.reads})

