"""Names the tool uses itself, refused in specs and templates.

The warehouse holds the tool's write markers (`_backfill_commits`, what makes recovery exactly once)
and, while a field selection is written, temporary `_bf_src*` tables; a PostgreSQL ledger that shares
the warehouse's schema keeps its `bf_*` tables there. A table or column of a project with one of
those names would overwrite or delete the tool's own records. Templates see internal helpers under
names starting with `_` (e.g. the one scheduling parameters are evaluated by); a template may not
call them.
"""

from __future__ import annotations

import os

from ..errors import SpecError
from .model import EngineConfig, StateConfig
from .yamlpos import Located

__all__ = ["CATALOG_PREFIXES", "INTERNAL_PREFIXES", "LEDGER_PREFIX", "ledger_shares_warehouse", "reserved_name_errors",
           "template_name_problem"]

INTERNAL_PREFIXES = ("_backfill", "_bf_")  # the tool's own warehouse tables and columns
LEDGER_PREFIX = "bf_"  # the ledger's tables


def ledger_shares_warehouse(engine: EngineConfig, state: StateConfig) -> bool:
    """True when the ledger's tables live in the schema the warehouse tables are written to."""
    if engine.type != "postgres" or not state.url_env or not engine.url_env:
        return False
    if (state.schema or "public") != engine.schema:
        return False
    if state.url_env == engine.url_env:
        return True
    ledger_url, warehouse_url = os.environ.get(state.url_env, ""), os.environ.get(engine.url_env, "")
    return bool(ledger_url) and _same_database(ledger_url, warehouse_url)


def _same_database(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        rest = url.split("://", 1)[-1]
        return rest.rsplit("@", 1)[-1].split("?", 1)[0].rstrip("/")

    return norm(a) == norm(b)


# table names an engine resolves to its own catalog before (or instead of) the warehouse's schema:
# PostgreSQL searches pg_catalog first (`pg_authid` would read the roles' password hashes)
CATALOG_PREFIXES = ("pg_", "information_schema", "duckdb_", "sqlite_", "pragma_")


def _problem(name: str, what: str, ledger_shared: bool) -> str | None:
    if what == "table" and name.lower().startswith(CATALOG_PREFIXES):
        return (f"table name '{name}' is reserved: the engines resolve names starting with "
                f"{', '.join(repr(p) for p in CATALOG_PREFIXES)} to their system catalogs; rename the table")
    if name.startswith(INTERNAL_PREFIXES):
        return (f"{what} name '{name}' is reserved: names starting with '_backfill' or '_bf_' are backfill's "
                f"own (its write markers and work tables); rename the {what}")
    if ledger_shared and what == "table" and name.startswith(LEDGER_PREFIX):
        return (f"table name '{name}' is reserved: the ledger shares the warehouse's schema and keeps its "
                f"'bf_*' tables there; rename the table, or give the ledger its own schema (state.schema)")
    return None


def reserved_name_errors(doc: Located, ledger_shared: bool) -> list[SpecError]:
    """Errors for a table spec whose table, partition or field names are the tool's own."""
    v = doc.value
    errors: list[SpecError] = []
    checks: list[tuple[tuple[str | int, ...], object, str]] = [(("name",), v.get("name"), "table"),
                                                                (("partition",), v.get("partition"), "column")]
    checks += [(("fields", i, "name"), f.get("name"), "column")
               for i, f in enumerate(v.get("fields") or ()) if isinstance(f, dict)]
    for path, name, what in checks:
        problem = _problem(name, what, ledger_shared) if isinstance(name, str) else None
        if problem:
            errors.append(doc.error(path, problem))
    return errors


def template_name_problem(name: str) -> str | None:
    """Why a name a template uses is not for templates (None when it is fine)."""
    if name.startswith("_"):
        return (f"'{name}' is internal to backfill and not for templates; use the documented variables and "
                "helpers (ds, params, ref, source, ds_add, ...)")
    return None
