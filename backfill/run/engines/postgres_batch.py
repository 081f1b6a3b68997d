"""Batched writes on PostgreSQL (see batch.py): one transaction replaces every partition of the batch.

For an integration table the batch's SELECT runs once in DuckDB over the project folder and its rows
are COPYed into PostgreSQL inside the transaction, like a single partition's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb
import psycopg

from .base import MARKER_TABLE, CancelToken, WriteCancelled, qident, qlist
from .batch import BatchRequest, batch_error, batch_insert, batch_select, count_sql, marker_inserts, per_member
from .lockdown import TimeLimit, time_limit
from .pg_common import cancel_query, write_failure

if TYPE_CHECKING:
    from .postgres_engine import PostgresEngine

__all__ = ["pg_write_batch"]


def pg_write_batch(engine: PostgresEngine, req: BatchRequest, cancel: CancelToken | None) -> dict[str, int]:
    token = cancel or CancelToken()
    duck = engine._duck_cursor() if req.table.kind == "integration" else None

    def check() -> None:
        if token.cancelled:
            raise WriteCancelled(f"{req.label}: cancelled")

    try:
        with engine._pool.connection() as conn:
            def interrupt() -> None:
                if duck is not None:
                    duck.interrupt()
                cancel_query(conn)
            token.on_cancel(interrupt)
            limit = TimeLimit(req.table.timeout or engine.timeout)
            try:
                check()
                if duck is not None:
                    select, params = batch_select(req, "?")
                    with time_limit(limit, duck.interrupt):
                        duck.execute(select, params)
                with conn.transaction(), conn.cursor() as cur:
                    engine._instance_settings(cur, req.table)
                    statements = batch_insert(req, "%s")
                    cur.execute(*statements[0])
                    check()
                    if duck is None:
                        cur.execute(*statements[1])
                    else:
                        _copy_rows(cur, req, duck, check)
                    check()
                    cur.execute(f"SET LOCAL search_path TO {qident(engine.schema)}")  # whatever the SQL set
                    counted = per_member(req, cur.execute(*count_sql(req, "%s")).fetchall())
                    for sql, params in marker_inserts(f"{qident(engine.schema)}.{qident(MARKER_TABLE)}", req,
                                                      counted, "%s"):
                        cur.execute(sql, params)
                    check()
                return counted
            except (psycopg.Error, duckdb.Error) as exc:
                raise write_failure(exc, token, limit, req.label, f"writing {req.label} in one batch failed: ",
                                    req.table.name, batch_error(req, exc)) from exc
            finally:
                token.clear()
    finally:
        if duck is not None:
            duck.close()


def _copy_rows(cur: psycopg.Cursor[Any], req: BatchRequest, duck: duckdb.DuckDBPyConnection,
               check: Any) -> None:
    cols = qlist([f.name for f in req.table.fields])
    with cur.copy(f"COPY {qident(req.table.name)} ({cols}, {qident(req.table.partition)}) FROM STDIN") as copy:
        while rows := duck.fetchmany(10_000):
            check()
            for row in rows:
                copy.write_row(row)
