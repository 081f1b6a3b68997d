"""What every warehouse engine offers, and the small helpers they share.

The tool owns every write: an engine replaces one partition (or some columns of it) of a declared
table in one transaction, together with a marker row in `_backfill_commits` that says which attempt
wrote it. Either all of it commits or none of it does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ...errors import UserError
from ...spec.model import Table
from ...sql.sqlcheck import partition_type

if TYPE_CHECKING:
    from .batch import BatchRequest

__all__ = [
    "LEGACY_MARKER_TABLE",
    "MARKER_COLUMNS",
    "MARKER_TABLE",
    "MarkerReads",
    "CancelToken",
    "Engine",
    "EngineError",
    "WriteCancelled",
    "WriteRequest",
    "duckdb_explain",
    "merge_statements",
    "one_line",
    "partition_value",
    "qident",
    "qlist",
    "qmark_to_format",
    "select_body",
    "selected_columns",
    "sql_literal",
    "write_error",
]

MARKER_TABLE = "_backfill_commits"
# name, type: the marker table's columns, in both engines. The attempt id (`run:instance:n`) is all
# recovery asks of a marker; the ledger has the rest. Two columns: a marker is a second table in every
# write's commit, and in DuckDB each column of it costs (7 columns cost 0.55 ms a write, 2 about 0.38)
MARKER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("attempt_id", "VARCHAR NOT NULL"),  # unique by construction (run id + instance + attempt): no key to maintain
    ("rows", "BIGINT"),
)
LEGACY_MARKER_TABLE = "_backfill_writes"  # the markers of earlier versions (7 columns): still read, never written


class MarkerReads:
    """Which attempts committed, from the markers (and from an earlier version's, where they exist)."""

    read_only: bool
    query: Callable[[str, Sequence[object]], list[tuple[object, ...]]]  # the engine's own
    _marker_tables: list[str] | None = None

    def _markers(self, where: str, value: str) -> list[tuple[object, ...]]:
        tables = self._marker_tables
        if tables is None:  # asked once: the current table, and an earlier version's where it exists
            found = {str(r[0]) for r in self.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_name IN (?, ?)", [MARKER_TABLE, LEGACY_MARKER_TABLE])}
            tables = [t for t in (MARKER_TABLE, LEGACY_MARKER_TABLE) if t in found]
            if MARKER_TABLE in tables or self.read_only:  # a writable engine creates the current one
                self._marker_tables = tables
        if not tables:
            return []  # a warehouse nothing was written to
        sql = " UNION ALL ".join(f'SELECT attempt_id, "rows" FROM {qident(t)} WHERE {where}' for t in tables)
        return self.query(sql, [value] * len(tables))

    def committed_attempt(self, attempt_id: str) -> int | None:
        """Rows the attempt wrote if it committed, else None."""
        rows = self._markers("attempt_id = ?", attempt_id)
        return int(rows[0][1]) if rows else None  # type: ignore[call-overload]

    def committed_attempts(self, prefix: str) -> list[tuple[str, int]]:
        """(attempt id, rows) of the committed attempts whose id starts with `prefix`."""
        return [(str(a), int(n or 0)) for a, n in self._markers("starts_with(attempt_id, ?)", prefix)]  # type: ignore[call-overload]


@dataclass
class CancelToken:
    """Set by the executor; an engine registers how to interrupt the SQL it is running."""

    cancelled: bool = False
    _interrupt: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def on_cancel(self, fn: Callable[[], None]) -> None:
        """Register the interrupt of the running SQL; called at once if already cancelled."""
        with self._lock:
            self._interrupt = fn
            if self.cancelled:
                _call_quietly(fn)

    def cancel(self) -> None:
        """Mark cancelled and interrupt the running SQL, if any (safe from any thread)."""
        with self._lock:  # held while interrupting, so clear() waits for an interrupt under way
            self.cancelled = True
            if self._interrupt is not None:
                _call_quietly(self._interrupt)

    def clear(self) -> None:
        """Forget the registered interrupt (the statement it interrupts is over)."""
        with self._lock:
            self._interrupt = None


def _call_quietly(fn: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):  # an interrupt that fails must not break the canceller
        fn()


class WriteCancelled(Exception):
    """write_partition was cancelled through its token; nothing was committed."""


class EngineError(UserError, RuntimeError):
    """An engine statement failed; the message carries the engine's own error text.

    Outside an instance (connecting, creating tables) it reaches the user as one `error:` line."""


@dataclass(frozen=True)
class WriteRequest:
    table: Table
    ds: str  # "YYYY-MM-DD" (daily) or "YYYY-MM-DDTHH" (hourly)
    sql: str  # one SELECT producing the declared fields (or primary key + `fields`)
    fields: tuple[str, ...] | None  # None: replace the whole partition; else only these columns
    instance_id: str
    attempt_id: str
    fingerprint: str


class Engine(Protocol):
    dialect: str

    def ensure_tables(self, tables: Sequence[Table]) -> None: ...

    def write_partition(self, req: WriteRequest, cancel: CancelToken | None = None) -> int: ...

    def write_batch(self, req: BatchRequest, cancel: CancelToken | None = None) -> dict[str, int]: ...

    def committed_attempt(self, attempt_id: str) -> int | None: ...

    def committed_attempts(self, prefix: str) -> list[tuple[str, int]]: ...

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]: ...

    def explain(self, sql: str, table: Table | None = None) -> str | None: ...

    def close(self) -> None: ...


def qident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: object) -> str:
    """A value of ours (ids, dates, counts) as a SQL literal, for statements sent without parameters.

    Strings are single-quoted with quotes doubled (no backslash escapes in standard SQL strings)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, datetime):  # before date: a datetime is a date
        return f"TIMESTAMP '{value.replace(tzinfo=None).isoformat(' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        if "\x00" in value:
            raise EngineError("a NUL character cannot be written as a SQL literal")
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def qlist(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + qident(n) for n in names)


def merge_statements(req: WriteRequest, tmp: str, ph: str) -> list[tuple[str, int]]:
    """For a field selection materialised in table `tmp`: (SQL, how many partition values it binds)
    that set the chosen columns of the partition's rows matching on the primary key, then insert
    the keys that are missing. `ph` is the engine's placeholder."""
    t, part = qident(req.table.name), qident(req.table.partition)
    columns, setting = selected_columns(req)
    match = " AND ".join(f"tgt.{qident(k)} IS NOT DISTINCT FROM s.{qident(k)}" for k in req.table.primary_key)
    out: list[tuple[str, int]] = []
    if setting:
        sets = ", ".join(f"{qident(c)} = s.{qident(c)}" for c in setting)
        out.append((f"UPDATE {t} AS tgt SET {sets} FROM {tmp} AS s WHERE tgt.{part} = {ph} AND {match}", 1))
    out.append((f"INSERT INTO {t} ({qlist(columns)}, {part}) SELECT {qlist(columns, 's.')}, {ph} "
                f"FROM {tmp} AS s WHERE NOT EXISTS "
                f"(SELECT 1 FROM {t} AS tgt WHERE tgt.{part} = {ph} AND {match})", 2))
    return out


def partition_value(table: Table, ds: str) -> date | datetime:
    """The bound value of a partition: a DATE for daily tables, a TIMESTAMP on the hour for hourly ones."""
    text = ds.strip()
    try:
        if partition_type(table) == "TIMESTAMP":
            text = text.replace(" ", "T")
            if len(text) == 13:  # YYYY-MM-DDTHH
                text += ":00"
            value = datetime.fromisoformat(text)
            return value.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        return date.fromisoformat(text[:10]) if len(text) == 10 else datetime.fromisoformat(text).date()
    except ValueError as exc:
        raise EngineError(f"table '{table.name}': bad data timestamp '{ds}': {exc}") from exc


def selected_columns(req: WriteRequest) -> tuple[list[str], list[str]]:
    """(columns the SELECT must produce, columns to set): the declared fields for a whole partition,
    else the primary key then the chosen fields (key columns are matched, not set)."""
    table = req.table
    if req.fields is None:
        return list(table.field_names), list(table.field_names)
    if not table.primary_key:
        raise EngineError(f"table '{table.name}' has no primary_key: a field selection needs one")
    unknown = [f for f in req.fields if f not in table.field_names]
    if unknown:
        raise EngineError(f"table '{table.name}' has no field(s) {', '.join(unknown)}")
    keys = list(table.primary_key)
    chosen = [f for f in dict.fromkeys(req.fields) if f not in keys]
    return keys + chosen, chosen


def duckdb_explain(cur: Any, sql: str) -> str | None:
    """None if DuckDB plans the SELECT on this cursor, else its one-line error; closes the cursor."""
    import duckdb

    try:
        cur.execute(f"EXPLAIN {sql}").fetchall()
        return None
    except duckdb.Error as exc:
        return one_line(exc)
    finally:
        cur.close()


def qmark_to_format(sql: str) -> str:
    """`?` placeholders (outside quotes) to psycopg's `%s`; literal `%` doubled."""
    out, quote = [], ""
    for ch in sql:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append("%%" if ch == "%" else ch)
    return "".join(out)


def select_body(req: WriteRequest) -> str:
    """The request's SELECT, ready to nest in `FROM (...)`: no trailing semicolons."""
    sql = req.sql.strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    return sql


def one_line(exc: BaseException) -> str:
    """The first meaningful line of an engine's error message."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def write_error(req: WriteRequest, exc: BaseException) -> EngineError:
    return EngineError(f"writing {req.table.name} partition {req.ds} failed: {one_line(exc)}")
