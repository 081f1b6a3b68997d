"""What the PostgreSQL engine's single-partition and batch writes share: type spellings, cancelling a
running statement, and what a failed write raises."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from .base import CancelToken, EngineError, WriteCancelled
from .lockdown import TimeLimit

__all__ = ["cancel_query", "pg_type", "write_failure"]

Conn = psycopg.Connection[Any]

# DuckDB-style declared types whose PostgreSQL spelling differs; the rest are the same
_PG_TYPES = {
    "DOUBLE": "DOUBLE PRECISION", "FLOAT8": "DOUBLE PRECISION", "FLOAT": "REAL", "FLOAT4": "REAL",
    "TINYINT": "SMALLINT", "INT1": "SMALLINT", "UTINYINT": "SMALLINT", "USMALLINT": "INTEGER",
    "UINTEGER": "BIGINT", "UBIGINT": "NUMERIC(20,0)", "HUGEINT": "NUMERIC(38,0)",
    "STRING": "TEXT", "BLOB": "BYTEA", "DATETIME": "TIMESTAMP",
}


def pg_type(declared: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9_]+)\s*(.*)$", declared)
    if not m or m.group(2):
        return declared
    return _PG_TYPES.get(m.group(1).upper(), declared)


def cancel_query(conn: Conn) -> None:
    """Cancel what `conn` runs now (from another thread)."""
    if hasattr(conn, "cancel_safe"):
        conn.cancel_safe(timeout=5.0)
    else:
        conn.cancel()


def write_failure(exc: Exception, token: CancelToken, limit: TimeLimit, label: str, failed: str, table: str,
                  otherwise: Exception) -> Exception:
    """What a failed write (one partition or one batch) raises: cancelled, out of time, or `otherwise`."""
    if token.cancelled:
        return WriteCancelled(f"{label}: cancelled")
    if limit.expired or isinstance(exc, psycopg.errors.QueryCanceled):
        return EngineError(failed + limit.message(table))
    return otherwise
