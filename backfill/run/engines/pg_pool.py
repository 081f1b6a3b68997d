"""A small pool of PostgreSQL connections, each reset to the engine's session before reuse."""

from __future__ import annotations

import select
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

__all__ = ["Pool"]

Conn = psycopg.Connection[Any]


class Pool:
    """At most `size` connections, handed to one thread at a time. A connection given back is reset
    (`reset`, e.g. RESET ALL and the engine's own settings) so that nothing a statement changed in
    its session, such as set_config(..., false), reaches the next user; one that fails it is closed."""

    def __init__(self, connect: Callable[[], Conn], size: int, reset: Callable[[Conn], None]) -> None:
        self._connect, self._size, self._reset = connect, max(1, size), reset
        self._idle: list[Conn] = []
        self._count = 0
        self._cond = threading.Condition()

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        with self._cond:
            while not self._idle and self._count >= self._size:
                self._cond.wait()
            conn = self._idle.pop() if self._idle else None
            if conn is not None and _closed_by_server(conn):  # terminated while idle: use a new one
                conn.close()
                conn = None
                self._count -= 1
            if conn is None:
                self._count += 1
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                with self._cond:
                    self._count -= 1
                    self._cond.notify()
                raise
        try:
            yield conn
        finally:
            healthy = not conn.broken and conn.info.transaction_status == pq.TransactionStatus.IDLE
            if healthy:
                try:
                    self._reset(conn)
                except psycopg.Error:
                    healthy = False
            if not healthy:
                conn.close()
            with self._cond:
                if healthy:
                    self._idle.append(conn)
                else:
                    self._count -= 1
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            for conn in self._idle:
                conn.close()
            self._count -= len(self._idle)
            self._idle.clear()


def _closed_by_server(conn: Conn) -> bool:
    """An idle connection the server has written to (its goodbye, then end of file) is gone; no
    round trip: a non-blocking look at its socket."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)
