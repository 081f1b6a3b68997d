"""Which tables a template's SQL reads, as the engine will read them.

- A name is a CTE only where that CTE is in scope (the WITH of a query around it): a CTE named
  `duckdb_tables` inside a subquery does not make `duckdb_tables` elsewhere in the query a CTE, and
  the engine's catalog would be read there.
- A template names no schema or catalog: `ledger.bf_instances` or `other.orders` would read past the
  declared tables, whose last part is all that was compared.
- Characters that the checker and the engines read differently are refused: sqlglot reads a
  non-breaking space as a space, PostgreSQL as part of a name (`\u00a0$$` then hides SQL in what the
  checker takes for a string).
"""

from __future__ import annotations

import re

from sqlglot import exp

from .sandbox import line_col

__all__ = ["cte_in_scope", "is_qualified", "odd_character"]

# whitespace other than space, tab, newline and carriage return; zero-width and byte-order marks
_ODD = re.compile(r"[^\S \t\n\r]|[\u200b-\u200d\u2060\ufeff]")


def cte_in_scope(table: exp.Table) -> bool:
    """Whether an unqualified table reference names a CTE of a query it stands in."""
    name = table.name
    node = table.parent
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with")
        if isinstance(with_, exp.With) and any(c.alias_or_name == name for c in with_.expressions):
            return True
        node = node.parent
    return False


def is_qualified(table: exp.Table) -> bool:
    return bool(table.args.get("db") or table.args.get("catalog"))


def odd_character(sql: str) -> tuple[str, int, int, str] | None:
    """(message, line, col, the character) of the first character the checker and an engine may read
    differently (the character is the token that finds it again in the template)."""
    m = _ODD.search(sql)
    if m is None:
        return None
    line, col = line_col(sql, m.start())
    return (f"the SQL holds the character U+{ord(m.group()):04X}, which the engine may read otherwise than this "
            "check does; write a plain space (or, inside a text, CHR())", line, col, m.group())
