"""SQL checks with sqlglot, done once per distinct SQL shape.

For one rendered template: exactly one SELECT (writes, DDL and several statements are refused),
table references resolved to declared tables, columns qualified against the declared fields of
upstream tables, the projection equal to the table's declared fields, and the SQL transpiled from
the project dialect to the engine dialect.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.tokens import TokenType

from ..spec.model import Table
from .functions import function_problems
from .tablerefs import cte_in_scope, is_qualified, odd_character

__all__ = ["ShapeCheck", "SqlProblem", "check_sql", "partition_type"]

_WRITES: tuple[type[exp.Expr], ...] = (
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
    tree: exp.Expr | None = field(default=None, compare=False)


def partition_type(table: Table) -> str:
    return "TIMESTAMP" if table.hourly else "DATE"


def _pos(node: exp.Expr) -> tuple[int, int]:
    """Where a column or an alias starts (sqlglot keeps where its identifier ends)."""
    name = node.name
    if isinstance(node, exp.Alias) and isinstance(node.args.get("alias"), exp.Identifier):
        target, name = node.args["alias"], node.alias
    else:
        target = node.this if isinstance(node.this, exp.Identifier) else node
    meta = target.meta if isinstance(target, exp.Expr) else {}
    return int(meta.get("line", 1)), max(1, int(meta.get("col", 1)) - len(name) + 1)


def _statement_kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return type(node).__name__.upper().replace("TRUNCATETABLE", "TRUNCATE")


def check_sql(
    sql: str,
    table: Table,
    tables: Mapping[str, Table],
    dialect: str,
    engine_dialect: str,
    allow_functions: Iterable[str] = (),
    sources: Iterable[str] = ("data",),
    ranged: bool = False,
    escapes: Callable[[str], str | None] | None = None,
) -> ShapeCheck:
    odd = odd_character(sql)
    if odd is not None:
        return ShapeCheck((SqlProblem(*odd),))
    try:
        return _check_sql(sql, table, tables, dialect, engine_dialect, allow_functions, sources, ranged, escapes)
    except RecursionError:
        return ShapeCheck((SqlProblem("the SQL nests too deeply to be checked; flatten its parentheses or "
                                      "subqueries", 1, 1),))


def _check_sql(
    sql: str,
    table: Table,
    tables: Mapping[str, Table],
    dialect: str,
    engine_dialect: str,
    allow_functions: Iterable[str],
    sources: Iterable[str],
    ranged: bool,
    escapes: Callable[[str], str | None] | None,
) -> ShapeCheck:
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as exc:
        e = exc.errors[0] if exc.errors else {}
        highlight = str(e.get("highlight") or "")  # sqlglot's col is where the highlight ends
        col = max(1, int(e.get("col") or 1) - len(highlight) + 1)
        return ShapeCheck((SqlProblem(f"SQL syntax: {e.get('description', str(exc))}",
                                      int(e.get("line") or 1), col, highlight),))
    except SqlglotError as exc:
        return ShapeCheck((SqlProblem(f"SQL: {exc}", 1, 1),))
    if len(statements) != 1:
        line, col, token = _first_semicolon(sql, dialect)
        return ShapeCheck((SqlProblem(
            f"the template renders {len(statements)} statements; it must be exactly one SELECT"
            + ("; remove the ';' and what follows it" if token else ""), line, col, token),))
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

    problems: list[SqlProblem] = [
        SqlProblem(f.message, 1, 1, f.name)
        for f in function_problems(tree, engine_dialect, allow_functions, sources, escapes)]
    reads: list[str] = []
    table_functions = False
    for t in tree.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):
            table_functions = True
            continue
        name = t.name
        if is_qualified(t):
            line, col = _pos(t)
            shown = ".".join(p.name for p in t.parts)
            problems.append(SqlProblem(f"'{shown}' names a schema or catalog: a template reads declared tables "
                                       "only, through {{ ref('table') }}", line, col, name))
            continue
        if cte_in_scope(t):
            continue
        if name not in tables:
            line, col = _pos(t)
            problems.append(SqlProblem(f"unknown table '{name}': declare it in tables/ or fix the name",
                                       line, col, name))
        elif name not in reads:
            reads.append(name)
    if problems:
        return ShapeCheck(tuple(problems), tuple(reads), has_table_functions=table_functions)

    if not table_functions:
        schema: dict[str, object] = {
            name: {**{f.name: f.type for f in tables[name].fields},
                   tables[name].partition: partition_type(tables[name])}
            for name in reads
        }
        try:
            qualified = qualify(tree.copy(), schema=schema, dialect=dialect, validate_qualify_columns=True,
                                quote_identifiers=False, identify=False)
            selects = qualified.named_selects
        except OptimizeError as exc:
            return ShapeCheck((_optimize_problem(str(exc), tree, schema),), tuple(reads))
    else:
        if any(isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star))
               for s in tree.selects):
            star = SqlProblem("SELECT * from a source file: list the columns explicitly", 1, 1, "*")
            return ShapeCheck((star,), tuple(reads), has_table_functions=True)
        selects = tree.named_selects
    problems.extend(_projection_problems(tree, selects, table, ranged))
    if problems:
        return ShapeCheck(tuple(problems), tuple(reads), has_table_functions=table_functions)
    engine_sql = sql if dialect == engine_dialect else tree.sql(dialect=engine_dialect)
    return ShapeCheck((), tuple(reads), engine_sql, table_functions, tree)

def _first_semicolon(sql: str, dialect: str) -> tuple[int, int, str]:
    """Where the first statement ends: (line, col, ';'), or (1, 1, '') if the tokens do not say."""
    try:
        for tok in sqlglot.tokenize(sql, read=dialect):
            if tok.token_type == TokenType.SEMICOLON:
                return tok.line, tok.col, ";"
    except SqlglotError:
        pass
    return 1, 1, ""


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name.lower(), sorted(set(candidates)), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _optimize_problem(message: str, tree: exp.Expr, schema: Mapping[str, Any]
                      ) -> SqlProblem:
    """A qualify failure, said in the user's words and located at the offending column."""
    every = [c for cols in schema.values() for c in cols]
    m = re.search(r"Column '([^']+)' could not be resolved( for table: '([^']+)')?"
                  r"(?:.*?Line: (\d+), Col: (\d+))?", message, re.S)
    if m:
        col_name = m.group(1).split(".")[-1].strip('"')
        line, col = int(m.group(4) or 1), int(m.group(5) or 1)
        col = max(1, col - len(col_name) + 1)
        if m.group(3):
            return SqlProblem(f"unknown column '{m.group(3)}.{col_name}': no table or alias '{m.group(3)}' "
                              "is read here", line, col, col_name)
        owners = sorted(t for t, cols in schema.items() if col_name.lower() in cols)
        if len(owners) > 1:
            return SqlProblem(f"column '{col_name}' is ambiguous: it is a field of {' and '.join(owners)}; "
                              "qualify it with a table alias", line, col, col_name)
        return SqlProblem(f"unknown column '{col_name}': it is not a declared field of the tables read here"
                          + _did_you_mean(col_name, every), line, col, col_name)
    m = re.match(r"Unknown column: (\S+)", message)
    if m:
        name = m.group(1).strip('"').lower()
        node = _find_unknown_column(tree, name, schema)
        if node is not None:
            line, col = _pos(node)
            shown = node.sql()
            source = _source_table(tree, node.table)
            if source is not None and source in schema:
                return SqlProblem(f"unknown column '{shown}': table '{source}' has no field '{node.name}'"
                                  + _did_you_mean(node.name, list(schema[source])), line, col, node.name)
            return SqlProblem(f"unknown column '{shown}': it is not a declared field of the tables read here"
                              + _did_you_mean(node.name, every), line, col, node.name)
        return SqlProblem(f"unknown column '{name}': it is not a declared field of the tables read here"
                          + _did_you_mean(name, every), 1, 1, name)
    first = message.splitlines()[0] if message else "cannot resolve the query"
    return SqlProblem(f"SQL: {first}", 1, 1)


def _source_table(tree: exp.Expr, alias: str) -> str | None:
    """The declared table an alias (or bare table name) stands for, if any."""
    if not alias:
        return None
    for t in tree.find_all(exp.Table):
        if isinstance(t.this, exp.Identifier) and alias.lower() in (t.alias_or_name.lower(), t.name.lower()):
            return t.name
    return None


def _find_unknown_column(tree: exp.Expr, name: str, schema: Mapping[str, Any]
                         ) -> exp.Column | None:
    """The first column named `name` that its table does not have (else the first named so)."""
    named = [c for c in tree.find_all(exp.Column) if c.name.lower() == name]
    named.sort(key=lambda c: _pos(c))
    for c in named:
        source = _source_table(tree, c.table)
        if source is None or name not in {k.lower() for k in schema.get(source, {})}:
            return c
    return named[0] if named else None


def _projection_problems(tree: exp.Query, selects: list[str], table: Table, ranged: bool = False
                         ) -> list[SqlProblem]:
    out: list[SqlProblem] = []
    declared = list(table.field_names)
    seen: set[str] = set()
    outer = tree.selects
    stars = [s for s in outer
             if isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star))]
    explicit = {s.alias_or_name: s for s in outer if s not in stars}
    for i, name in enumerate(selects):
        # with a *, the expanded names no longer line up with the written ones
        node = (outer[i] if i < len(outer) else tree) if not stars else explicit.get(name, tree)
        line, col = _pos(node) if isinstance(node, exp.Column | exp.Alias) else (1, 1)
        token, why = name, ""
        if stars and name not in explicit:
            token, why = "*", f" (a * selects '{name}': list the columns instead)"
        if name in seen:
            out.append(SqlProblem(f"column '{name}' is selected twice{why}", line, col, token))
        seen.add(name)
        if name == table.partition and ranged:
            continue  # a range template says which partition each row belongs to
        if name == table.partition:
            out.append(SqlProblem(f"do not select the partition column '{name}': the tool adds it{why}",
                                  line, col, token))
        elif name not in declared:
            out.append(SqlProblem(
                f"selects '{name}', which is not a declared field of '{table.name}'; declare it or remove it{why}",
                line, col, token))
    if ranged and table.partition not in seen:
        out.append(SqlProblem(
            f"a range template (it uses start_ds / end_ds) must select the partition column "
            f"'{table.partition}' too: say which partition each row belongs to", 1, 1, "SELECT"))
    missing = [f for f in declared if f not in seen]
    if missing:
        out.append(SqlProblem(
            f"does not select declared field(s) {', '.join(missing)} of '{table.name}'; select them "
            "(with AS to name an expression) or remove them from fields", 1, 1, "SELECT"))
    return out
