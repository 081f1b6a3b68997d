"""The embedded DuckDB warehouse: one database file under the project, one cursor per write.

The connection runs template SQL locked down (see lockdown.py): only the project's source folders
are readable, no extension loads, the configuration is locked, and each write has a time limit."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from ...spec.model import Table
from ...sql.sqlcheck import partition_type
from .base import (
    MARKER_COLUMNS,
    MARKER_TABLE,
    CancelToken,
    EngineError,
    MarkerReads,
    WriteCancelled,
    WriteRequest,
    duckdb_explain,
    merge_statements,
    one_line,
    partition_value,
    qident,
    qlist,
    select_body,
    selected_columns,
    sql_literal,
    write_error,
)
from .batch import BatchRequest, batch_error, batch_insert, count_sql, marker_inserts, per_member
from .lockdown import DUCKDB_CONFIG, lock_down_duckdb, shadowed_sources, time_limit

__all__ = ["DuckDBEngine", "CONFLICT_RETRIES"]

CONFLICT_RETRIES = 5  # extra tries of a whole write after a transaction conflict

Run = Callable[..., list[tuple[Any, ...]]]  # run(sql, params=()) -> rows
T = TypeVar("T")


class _Conflict(Exception):
    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _is_conflict(exc: Exception) -> bool:
    return isinstance(exc, duckdb.TransactionException) or "conflict" in str(exc).lower()


class DuckDBEngine(MarkerReads):
    dialect = "duckdb"

    def __init__(self, path: str | Path, root: str | Path, *, read_only: bool = False,
                 threads: int | None = None, sources: Sequence[str] = ("data",),
                 timeout: float | None = None) -> None:
        self.root = Path(root).resolve()
        self.read_only = read_only
        self.timeout = timeout  # seconds per write when the table does not say
        config: dict[str, Any] = dict(DUCKDB_CONFIG)
        if threads:
            config["threads"] = int(threads)
        target = str(path)
        if target != ":memory:":
            p = Path(path)
            p = p if p.is_absolute() else self.root / p
            if read_only and not p.exists():
                target = ":memory:"  # nothing written yet: an empty warehouse
                read_only = False
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                target = str(p)
        self.path = target
        shadowed = shadowed_sources(self.root, sources)
        if shadowed:
            raise EngineError(f"cannot open the DuckDB warehouse {target}: {shadowed}")
        try:
            self._con = duckdb.connect(target, read_only=read_only, config=config)
            lock_down_duckdb(self._con, self.root, sources)
        except duckdb.Error as exc:
            raise EngineError(f"cannot open the DuckDB warehouse {target}: {one_line(exc)}") from exc
        self._ddl_lock = threading.Lock()
        self._local = threading.local()
        self._write_cursors: list[duckdb.DuckDBPyConnection] = []
        if not self.read_only:
            self._ensure_marker()

    # ------------------------------------------------------------------ plumbing

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()  # file_search_path and the lockdown are the connection's, global

    def _write_cursor(self) -> duckdb.DuckDBPyConnection:
        """One cursor per writing thread, kept: a fresh cursor and its settings cost ~0.3 ms per write."""
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._cursor()
            self._local.cursor = cur
            with self._ddl_lock:
                self._write_cursors.append(cur)
        return cur

    def _ensure_marker(self) -> None:
        cols = ", ".join(f"{qident(n)} {t}" for n, t in MARKER_COLUMNS)
        with self._ddl_lock:
            cur = self._cursor()
            try:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {qident(MARKER_TABLE)} ({cols})")
            finally:
                cur.close()

    def _writable(self) -> None:
        if self.read_only:
            raise EngineError(f"the DuckDB warehouse {self.path} is open read-only")

    # ------------------------------------------------------------------ Engine API

    def ensure_tables(self, tables: Sequence[Table]) -> None:
        self._writable()
        self._ensure_marker()
        with self._ddl_lock:
            cur = self._cursor()
            try:
                for table in tables:
                    self._ensure_table(cur, table)
            except duckdb.Error as exc:
                raise EngineError(f"creating the warehouse tables failed: {one_line(exc)}") from exc
            finally:
                cur.close()

    def _ensure_table(self, cur: duckdb.DuckDBPyConnection, table: Table) -> None:
        columns = [(f.name, f.type) for f in table.fields] + [(table.partition, partition_type(table))]
        body = ", ".join(f"{qident(n)} {t}" for n, t in columns)
        cur.execute(f"CREATE TABLE IF NOT EXISTS {qident(table.name)} ({body})")
        rows = cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = current_schema() "
            "AND table_name = ?", [table.name]).fetchall()
        have = {str(r[0]) for r in rows}
        for name, type_ in columns:
            if name not in have:
                cur.execute(f"ALTER TABLE {qident(table.name)} ADD COLUMN {qident(name)} {type_}")

    def write_partition(self, req: WriteRequest, cancel: CancelToken | None = None) -> int:
        self._writable()
        value = partition_value(req.table, req.ds)
        head = f"INSERT INTO {qident(MARKER_TABLE)} VALUES ({sql_literal(req.attempt_id)}, "

        def body(run: Run) -> tuple[int, str]:
            rows = self._statements(req, value, run)
            return rows, f"{head}{int(rows)})"  # the marker row, sent with the COMMIT

        return self._transaction(req.instance_id, req.table, cancel, body, lambda exc: write_error(req, exc),
                                 f"writing {req.table.name} partition {req.ds} failed: ")

    def write_batch(self, req: BatchRequest, cancel: CancelToken | None = None) -> dict[str, int]:
        """Replace every partition of the batch in one transaction; rows written per member ds."""
        self._writable()

        def body(run: Run) -> tuple[dict[str, int], str]:
            for sql, params in batch_insert(req, "?"):
                run(sql, params)
            counted = per_member(req, run(*count_sql(req, "?")))
            for sql, params in marker_inserts(qident(MARKER_TABLE), req, counted, "?"):
                run(sql, params)
            return counted, ""

        return self._transaction(req.label, req.table, cancel, body, lambda exc: batch_error(req, exc),
                                 f"writing {req.label} in one batch failed: ")

    def _transaction(self, label: str, table: Table, cancel: CancelToken | None, body: Callable[[Run], tuple[T, str]],
                     failure: Callable[[Exception], EngineError], failed: str) -> T:
        """`body` in one transaction on this thread's cursor: retried on a conflict, interruptible,
        within the table's time limit (`failed` starts the message of a write that ran out of time).
        `body` returns its result and the last statement(s) of the transaction, sent with the COMMIT."""
        token = cancel or CancelToken()
        for attempt in range(CONFLICT_RETRIES + 1):
            if token.cancelled:
                raise WriteCancelled(f"{label}: cancelled")
            try:
                return self._once(label, table, token, body, failure, failed)
            except _Conflict as conflict:
                if attempt == CONFLICT_RETRIES:
                    raise failure(conflict.exc) from conflict.exc
                time.sleep(0.02 * (2 ** attempt) + random.uniform(0, 0.02))
        raise AssertionError("unreachable")

    def _once(self, label: str, table: Table, token: CancelToken, body: Callable[[Run], tuple[T, str]],
              failure: Callable[[Exception], EngineError], failed: str) -> T:
        """One try. Round trips are the cost of a small write (~0.4 ms each): BEGIN goes with the first
        statement that binds no parameters, the body's closing statements with the COMMIT."""
        cur = self._write_cursor()
        token.on_cancel(cur.interrupt)
        begin = ["BEGIN TRANSACTION; "]

        def run(sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
            if token.cancelled:
                raise WriteCancelled(f"{label}: cancelled")
            if begin:
                if params:  # kept apart: the statements before the last of a text bind no parameters
                    cur.execute(begin.pop())
                else:
                    sql = begin.pop() + sql
            return cur.execute(sql, params if isinstance(params, list) else list(params)).fetchall()

        seconds = table.timeout or self.timeout
        try:
            try:
                with time_limit(seconds, cur.interrupt) as limit:
                    try:
                        out, closing = body(run)
                    except duckdb.Error as exc:
                        if limit.expired and not token.cancelled:
                            raise EngineError(failed + limit.message(table.name)) from exc
                        raise
                run(f"{closing}; COMMIT" if closing else "COMMIT")
                return out
            except BaseException as exc:
                _rollback(cur)
                if token.cancelled:
                    raise WriteCancelled(f"{label}: cancelled") from exc
                if isinstance(exc, duckdb.Error) and _is_conflict(exc):
                    raise _Conflict(exc) from exc
                if isinstance(exc, duckdb.Error):
                    raise failure(exc) from exc
                raise
        finally:
            token.clear()

    def _statements(self, req: WriteRequest, value: object, run: Run) -> int:
        t, part = qident(req.table.name), qident(req.table.partition)
        columns, _ = selected_columns(req)
        if req.fields is None:  # one round trip with the BEGIN: our values as literals, no parameter
            literal = sql_literal(value)
            out = run(f"DELETE FROM {t} WHERE {part} = {literal}; INSERT INTO {t} ({qlist(columns)}, {part}) "
                      f"SELECT {qlist(columns, 'src.')}, {literal} FROM ({select_body(req)}\n) AS src")
            return int(out[0][0])
        tmp = qident(f"_bf_src_{uuid.uuid4().hex}")
        run(f"CREATE TEMP TABLE {tmp} AS SELECT {qlist(columns, 'src.')} FROM ({select_body(req)}\n) AS src")
        for sql, n in merge_statements(req, tmp, "?"):
            run(sql, [value] * n)
        rows = int(run(f"SELECT count(*) FROM {tmp}")[0][0])
        run(f"DROP TABLE {tmp}")
        return rows

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        cur = self._cursor()
        try:
            return [tuple(r) for r in cur.execute(sql, list(params)).fetchall()]
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB: {one_line(exc)}") from exc
        finally:
            cur.close()

    def explain(self, sql: str, table: Table | None = None) -> str | None:
        return duckdb_explain(self._cursor(), sql)

    def close(self) -> None:
        for cur in self._write_cursors:
            with contextlib.suppress(duckdb.Error):
                cur.close()
        self._con.close()


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # no transaction left to roll back
        cur.execute("ROLLBACK")
