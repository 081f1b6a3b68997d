"""SQL checks with sqlglot, done once per distinct SQL shape.

For one rendered template: exactly one SELECT (writes, DDL and several statements are refused),
table references resolved to declared tables, columns qualified against the declared fields of
upstream tables, the projection equal to the table's declared fields, and the SQL transpiled from
the project dialect to the engine dialect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from .model import Table

__all__ = ["ShapeCheck", "SqlProblem", "check_sql", "partition_type"]

_WRITES: tuple[type[exp.Expression], ...] = (
    exp.Insert, exp.Delete, exp.Update, exp.Create, exp.Drop, exp.Merge, exp.Command, exp.Alter,
    exp.TruncateTable, exp.Copy,
)


@dataclass(frozen=True)
class SqlProblem:
    message: str
    line: int  # in the rendered SQL, 1-based
    col: int
    token: str = ""  # the offending text, to find it again in the template


@dataclass(frozen=True)
class ShapeCheck:
    """What one SQL shape told us."""

    problems: tuple[SqlProblem, ...]
    reads: tuple[str, ...] = ()  # declared tables the SQL reads
    engine_sql: str = ""  # the checked SQL in the engine dialect
    has_table_functions: bool = False
    tree: exp.Expression | None = field(default=None, compare=False)


def partition_type(table: Table) -> str:
    return "TIMESTAMP" if table.hourly else "DATE"


def _pos(node: exp.Expression) -> tuple[int, int]:
    target = node.this if isinstance(node.this, exp.Identifier) else node
    meta = target.meta if isinstance(target, exp.Expression) else {}
    return int(meta.get("line", 1)), max(1, int(meta.get("col", 1)) - len(node.name) + 1)


def _statement_kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return type(node).__name__.upper().replace("TRUNCATETABLE", "TRUNCATE")


def check_sql(
    sql: str,
    table: Table,
    tables: Mapping[str, Table],
    dialect: str,
    engine_dialect: str,
) -> ShapeCheck:
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as exc:
        e = exc.errors[0] if exc.errors else {}
        return ShapeCheck((SqlProblem(f"SQL syntax: {e.get('description', str(exc))}",
                                      int(e.get("line") or 1), int(e.get("col") or 1),
                                      str(e.get("highlight") or "")),))
    except SqlglotError as exc:
        return ShapeCheck((SqlProblem(f"SQL: {exc}", 1, 1),))
    if len(statements) != 1:
        return ShapeCheck((SqlProblem(
            f"the template renders {len(statements)} statements; it must be exactly one SELECT", 1, 1),))
    tree = statements[0]
    for node in tree.walk():
        if isinstance(node, _WRITES):
            kind = _statement_kind(node)
            return ShapeCheck((SqlProblem(
                f"the template must be a single SELECT, found {kind}: the tool owns every write", 1, 1,
                kind.split()[0].lower()),))
    if not isinstance(tree, exp.Query):
        return ShapeCheck((SqlProblem(
            f"the template must be a single SELECT, found {_statement_kind(tree)}", 1, 1),))

    problems: list[SqlProblem] = []
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    reads: list[str] = []
    table_functions = False
    for t in tree.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):
            table_functions = True
            continue
        name = t.name
        if name in ctes and not t.db:
            continue
        if name not in tables:
            line, col = _pos(t)
            problems.append(SqlProblem(f"unknown table '{name}': declare it in tables/ or fix the name",
                                       line, col, name))
        elif name not in reads:
            reads.append(name)
    if name_of_self(table) in reads:
        line, col = 1, 1
        problems.append(SqlProblem(f"table '{table.name}' reads itself", line, col, table.name))
    if problems:
        return ShapeCheck(tuple(problems), tuple(reads), has_table_functions=table_functions)

    if not table_functions:
        schema = {
            name: {**{f.name: f.type for f in tables[name].fields},
                   tables[name].partition: partition_type(tables[name])}
            for name in reads
        }
        try:
            qualified = qualify(tree.copy(), schema=schema, dialect=dialect, validate_qualify_columns=True,
                                quote_identifiers=False, identify=False)
            selects = qualified.named_selects
        except OptimizeError as exc:
            return ShapeCheck((_optimize_problem(str(exc)),), tuple(reads))
    else:
        if any(isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star))
               for s in tree.selects):
            return ShapeCheck((SqlProblem("SELECT * from a source file: list the columns explicitly", 1, 1, "*"),),
                              tuple(reads), has_table_functions=True)
        selects = tree.named_selects
    problems.extend(_projection_problems(tree, selects, table))
    if problems:
        return ShapeCheck(tuple(problems), tuple(reads), has_table_functions=table_functions)
    engine_sql = sql if dialect == engine_dialect else tree.sql(dialect=engine_dialect)
    return ShapeCheck((), tuple(reads), engine_sql, table_functions, tree)


def name_of_self(table: Table) -> str:
    return table.name


def _optimize_problem(message: str) -> SqlProblem:
    m = re.search(r"Column '([^']+)' could not be resolved(?:.*?Line: (\d+), Col: (\d+))?", message, re.S)
    if m:
        col_name = m.group(1).split(".")[-1].strip('"')
        line, col = int(m.group(2) or 1), int(m.group(3) or 1)
        return SqlProblem(f"unknown column '{m.group(1)}': it is not a declared field of the tables read here",
                          line, max(1, col - len(col_name) + 1), col_name)
    first = message.splitlines()[0] if message else "cannot resolve the query"
    return SqlProblem(f"SQL: {first}", 1, 1)


def _projection_problems(tree: exp.Query, selects: list[str], table: Table) -> list[SqlProblem]:
    out: list[SqlProblem] = []
    declared = list(table.field_names)
    seen: set[str] = set()
    outer = tree.selects
    for i, name in enumerate(selects):
        node = outer[i] if i < len(outer) else tree
        line, col = _pos(node) if isinstance(node, exp.Column | exp.Alias) else (1, 1)
        if name in seen:
            out.append(SqlProblem(f"column '{name}' is selected twice", line, col, name))
        seen.add(name)
        if name == table.partition:
            out.append(SqlProblem(f"do not select the partition column '{name}': the tool adds it", line, col, name))
        elif name not in declared:
            out.append(SqlProblem(
                f"selects '{name}', which is not a declared field of '{table.name}'; declare it or remove it",
                line, col, name))
    missing = [f for f in declared if f not in seen]
    if missing:
        out.append(SqlProblem(
            f"does not select declared field(s) {', '.join(missing)} of '{table.name}'", 1, 1, "SELECT"))
    return out
