"""When the ledger's storage fails: one error naming the ledger and what to do, never a traceback.

A read-only file or folder, a full disk, a file-size limit, a lost or terminated PostgreSQL
connection: SQLAlchemy's `handle_error` event turns the driver's operational error into
`LedgerUnavailable` (a `UserError`: one `error:` line, exit 1). A lost connection is marked
`disconnect`: writes that are idempotent may try again on a fresh connection (the pool pre-pings).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import UserError

__all__ = ["LedgerUnavailable", "describe_ledger", "translate_errors"]

AGAIN = "then run `backfill apply` again (it recovers what was running)"

# (words of the driver's message, what it means, what to do)
_KINDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("readonly", "read-only", "permission denied"), "it is read-only",
     "make the file and its folder writable for this user"),
    (("disk is full", "no space left", "file too large", "disk i/o error", "quota"), "the disk is full or a "
     "size limit was reached", "free space on its disk"),
    (("unable to open database file",), "it cannot be opened",
     "check that its folder exists and is writable for this user"),
)


class LedgerUnavailable(UserError):
    """The ledger's storage failed; `disconnect` when a PostgreSQL connection was lost."""

    def __init__(self, message: str, disconnect: bool = False) -> None:
        super().__init__(message)
        self.disconnect = disconnect


def describe_ledger(url: sa.URL | str, schema: str | None = None) -> str:
    """The ledger as a user names it: its file, or its PostgreSQL server and database (no password)."""
    u = sa.make_url(url) if isinstance(url, str) else url
    if u.get_backend_name() == "sqlite":
        return f"the ledger {u.database}"
    where = f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"
    return f"the PostgreSQL ledger at {where}" + (f" (schema {schema})" if schema else "")


def _message(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    for line in str(original).splitlines():
        if line.strip():
            return " ".join(line.split())
    return type(original).__name__


def classify(exc: BaseException, where: str, disconnect: bool) -> LedgerUnavailable | None:
    """The user's view of a storage failure of the ledger, or None when it is not one."""
    text = _message(exc)
    low = text.lower()
    for words, meaning, todo in _KINDS:
        if any(w in low for w in words):
            return LedgerUnavailable(f"{where} cannot be written: {meaning} ({text}); {todo}, {AGAIN}")
    if disconnect or any(w in low for w in ("connection", "terminating", "server closed", "could not connect")):
        return LedgerUnavailable(f"{where} is unreachable: {text}; check that the server runs and accepts "
                                 f"connections, {AGAIN}", disconnect=True)
    return None


def translate_errors(engine: Engine, schema: str | None = None) -> None:
    """Operational errors of `engine` (storage, connection) reach the caller as `LedgerUnavailable`."""
    where = describe_ledger(engine.url, schema)

    @sa.event.listens_for(engine, "handle_error")
    def _translate(ctx: Any) -> None:
        if getattr(ctx, "is_pre_ping", False):  # the pool replaces a dead connection by itself
            return
        exc = ctx.original_exception
        dbapi = getattr(engine.dialect, "dbapi", None) or getattr(engine.dialect, "loaded_dbapi", None)
        operational = getattr(dbapi, "OperationalError", ()) if dbapi is not None else ()
        if not (ctx.is_disconnect or (operational and isinstance(exc, operational))):
            return
        translated = classify(exc, where, ctx.is_disconnect)
        if translated is not None:
            raise translated from exc
