"""The PostgreSQL warehouse: psycopg 3, one pooled connection per writing thread.

Integration tables read source files with DuckDB table functions (read_csv) that PostgreSQL lacks:
their SELECT runs in an in-memory DuckDB over the project folder and the rows are COPYed into
PostgreSQL inside the same transaction as the DELETE and the marker row.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import psycopg

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
    qmark_to_format,
    select_body,
    selected_columns,
    write_error,
)
from .batch import BatchRequest
from .lockdown import DUCKDB_CONFIG, TimeLimit, lock_down_duckdb, shadowed_sources, time_limit
from .pg_common import cancel_query, pg_type, write_failure
from .pg_pool import Pool

__all__ = ["PostgresEngine"]

_TMP = qident("_bf_src")
Conn = psycopg.Connection[Any]


class PostgresEngine(MarkerReads):
    dialect = "postgres"

    def __init__(self, url: str, schema: str, root: str | Path, *, pool_size: int = 5,
                 read_only: bool = False, sources: Sequence[str] = ("data",), timeout: float | None = None) -> None:
        self.url = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)
        self.schema, self.root, self.read_only = schema, Path(root).resolve(), read_only
        self.sources, self.timeout = tuple(sources), timeout
        self._pool = Pool(self._connect, pool_size, self._session)
        self._ddl_lock = threading.Lock()
        self._duck: duckdb.DuckDBPyConnection | None = None
        self._duck_lock = threading.Lock()
        if not read_only:
            self._ensure_marker()

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> Conn:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to {self._where()}: {one_line(exc)}; check that the server runs "
                              "and accepts connections") from exc
        self._session(conn)
        return conn

    def _where(self) -> str:
        """The warehouse as a user names it (no password)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.Error:
            return "the PostgreSQL warehouse"
        return (f"the PostgreSQL warehouse at {info.get('host') or 'localhost'}:{info.get('port') or 5432}/"
                f"{info.get('dbname') or ''}")

    def _error(self, exc: psycopg.Error) -> EngineError:
        """An error outside an instance's write; a lost connection says which server and what to do."""
        if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled):
            return EngineError(f"{self._where()} is unreachable: {one_line(exc)}; check that the server runs "
                               "and accepts connections, then run `backfill apply` again (it recovers what "
                               "was running)")
        return EngineError(f"PostgreSQL: {one_line(exc)}")

    def _session(self, conn: Conn) -> None:
        """The engine's session settings, from scratch: whatever a statement changed is undone (settings
        and session advisory locks; psycopg's prepared statements stay)."""
        conn.execute("RESET ALL")
        conn.execute("SELECT pg_advisory_unlock_all()")
        conn.execute(f"SET search_path TO {qident(self.schema)}")
        if self.read_only:
            conn.execute("SET default_transaction_read_only = on")

    def _instance_settings(self, cur: psycopg.Cursor[Any], table: Table) -> None:
        """First statements of an instance's transaction: its schema and its time limit."""
        cur.execute(f"SET LOCAL search_path TO {qident(self.schema)}")
        seconds = table.timeout or self.timeout
        if seconds:
            cur.execute(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}")

    def _duck_cursor(self) -> duckdb.DuckDBPyConnection:
        with self._duck_lock:
            if self._duck is None:
                shadowed = shadowed_sources(self.root, self.sources)
                if shadowed:
                    raise EngineError(shadowed)
                self._duck = duckdb.connect(":memory:", config=dict(DUCKDB_CONFIG))
                lock_down_duckdb(self._duck, self.root, self.sources)
            return self._duck.cursor()

    def _ddl(self, statements: Callable[[psycopg.Cursor[Any]], None]) -> None:
        with self._ddl_lock, self._pool.connection() as conn:
            for attempt in range(3):  # IF NOT EXISTS can still race with another process
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        statements(cur)
                    return
                except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject) as exc:
                    if attempt == 2:
                        raise self._error(exc) from exc
                except psycopg.Error as exc:
                    raise self._error(exc) from exc

    def _ensure_marker(self) -> None:
        cols = ", ".join(f"{qident(n)} {t}" for n, t in MARKER_COLUMNS)

        def run(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {qident(self.schema)}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {qident(MARKER_TABLE)} ({cols})")
        self._ddl(run)

    # ------------------------------------------------------------------ Engine API

    def ensure_tables(self, tables: Sequence[Table]) -> None:
        if self.read_only:
            raise EngineError("the PostgreSQL warehouse is open read-only")
        self._ensure_marker()

        def run(cur: psycopg.Cursor[Any]) -> None:
            for table in tables:
                columns = [(f.name, pg_type(f.type)) for f in table.fields]
                columns.append((table.partition, partition_type(table)))
                body = ", ".join(f"{qident(n)} {t}" for n, t in columns)
                cur.execute(f"CREATE TABLE IF NOT EXISTS {qident(table.name)} ({body})")
                have = {r[0] for r in cur.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s", [self.schema, table.name])}
                for name, type_ in columns:
                    if name not in have:
                        cur.execute(f"ALTER TABLE {qident(table.name)} ADD COLUMN {qident(name)} {type_}")
        self._ddl(run)

    def write_partition(self, req: WriteRequest, cancel: CancelToken | None = None) -> int:
        if self.read_only:
            raise EngineError("the PostgreSQL warehouse is open read-only")
        token = cancel or CancelToken()
        value = partition_value(req.table, req.ds)
        columns, _ = selected_columns(req)
        duck = self._duck_cursor() if req.table.kind == "integration" else None
        try:
            with self._pool.connection() as conn:
                def interrupt() -> None:
                    if duck is not None:
                        duck.interrupt()
                    cancel_query(conn)
                token.on_cancel(interrupt)
                try:
                    if token.cancelled:
                        raise WriteCancelled(f"{req.instance_id}: cancelled")
                    limit = TimeLimit(req.table.timeout or self.timeout)
                    if duck is not None:
                        with time_limit(limit, duck.interrupt):
                            duck.execute(f"SELECT {qlist(columns, 'src.')} FROM ({select_body(req)}\n) AS src")
                    with conn.transaction(), conn.cursor() as cur:
                        self._instance_settings(cur, req.table)
                        rows = self._statements(req, value, columns, cur, duck, token)
                        _check(token, req)
                        # qualified: the template's SQL may have changed search_path for this transaction
                        cur.execute(f"INSERT INTO {qident(self.schema)}.{qident(MARKER_TABLE)} VALUES (%s, %s)",
                                    [req.attempt_id, rows])
                        _check(token, req)
                    return rows
                except (psycopg.Error, duckdb.Error) as exc:
                    raise write_failure(exc, token, limit, req.instance_id,
                                        f"writing {req.table.name} partition {req.ds} failed: ", req.table.name,
                                        write_error(req, exc)) from exc
                finally:
                    token.clear()
        finally:
            if duck is not None:
                duck.close()

    def _statements(self, req: WriteRequest, value: object, columns: list[str], cur: psycopg.Cursor[Any],
                    duck: duckdb.DuckDBPyConnection | None, token: CancelToken) -> int:
        t, part = qident(req.table.name), qident(req.table.partition)

        def run(sql: str, params: Sequence[object] | None = None) -> psycopg.Cursor[Any]:
            _check(token, req)
            return cur.execute(sql, params)

        if req.fields is None:
            run(f"DELETE FROM {t} WHERE {part} = %s", [value])
            if duck is None:
                body = select_body(req).replace("%", "%%")  # with parameters, psycopg reads % as a placeholder
                return run(f"INSERT INTO {t} ({qlist(columns)}, {part}) SELECT {qlist(columns, 'src.')}, %s "
                           f"FROM ({body}\n) AS src", [value]).rowcount
            return _copy(cur, f"COPY {t} ({qlist(columns)}, {part}) FROM STDIN", duck, (value,), token, req)
        if duck is None:
            run(f"CREATE TEMP TABLE {_TMP} ON COMMIT DROP AS SELECT {qlist(columns, 'src.')} "
                f"FROM ({select_body(req)}\n) AS src")
            run(f"SET LOCAL search_path TO {qident(self.schema)}")  # whatever the template's SQL set
        else:
            types = {f.name: pg_type(f.type) for f in req.table.fields}
            run(f"CREATE TEMP TABLE {_TMP} ({', '.join(f'{qident(c)} {types[c]}' for c in columns)}) "
                "ON COMMIT DROP")
            _copy(cur, f"COPY {_TMP} ({qlist(columns)}) FROM STDIN", duck, (), token, req)
        for sql, n in merge_statements(req, _TMP, "%s"):
            run(sql, [value] * n)
        count = run(f"SELECT count(*) FROM {_TMP}").fetchone()
        return int(count[0]) if count else 0

    def write_batch(self, req: BatchRequest, cancel: CancelToken | None = None) -> dict[str, int]:
        if self.read_only:
            raise EngineError("the PostgreSQL warehouse is open read-only")
        from .postgres_batch import pg_write_batch

        return pg_write_batch(self, req, cancel)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        if params and "%s" not in sql:
            sql = qmark_to_format(sql)
        with self._pool.connection() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(sql, list(params) if params else None)
                    return [tuple(r) for r in cur.fetchall()] if cur.description else []
            except psycopg.Error as exc:
                raise self._error(exc) from exc

    def explain(self, sql: str, table: Table | None = None) -> str | None:
        if table is not None and table.kind == "integration":
            return duckdb_explain(self._duck_cursor(), sql)
        with self._pool.connection() as conn:
            try:
                with conn.transaction(force_rollback=True), conn.cursor() as cur:
                    cur.execute(f"EXPLAIN {sql}")
                return None
            except psycopg.Error as exc:
                return one_line(exc)

    def close(self) -> None:
        self._pool.close()
        with self._duck_lock:
            if self._duck is not None:
                self._duck.close()
                self._duck = None


def _check(token: CancelToken, req: WriteRequest) -> None:
    if token.cancelled:
        raise WriteCancelled(f"{req.instance_id}: cancelled")


def _copy(cur: psycopg.Cursor[Any], copy_sql: str, duck: duckdb.DuckDBPyConnection, extra: tuple[object, ...],
          token: CancelToken, req: WriteRequest) -> int:
    rows = 0
    with cur.copy(copy_sql) as copy:
        while batch := duck.fetchmany(10_000):
            _check(token, req)
            for row in batch:
                copy.write_row((*row, *extra))
            rows += len(batch)
    return rows
