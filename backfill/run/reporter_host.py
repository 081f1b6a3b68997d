"""The reporters a temporary Prefect server hosts (tempserver.py): one thread per apply connecting to
its abstract socket, each playing its stream (reporter_child.serve); `recording` says whether one
still plays, so a lingering server knows when it may exit."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from .reporter_child import serve

__all__ = ["recording", "serve_socket"]


def serve_socket(name: str, ready: Callable[[], object] | None = None) -> None:
    """In the temporary server's process: one thread per apply connecting to the abstract socket `name`;
    each reads its stream at once and plays it once `ready()` returns (the server booted)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(16)

    def one(conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as lines, conn.makefile("w") as out:
                serve(lines, out, ready=ready)
        finally:
            _ACTIVE.release()

    while True:
        conn, _ = listener.accept()
        _ACTIVE.acquire()
        threading.Thread(target=one, args=(conn,), name="reporter", daemon=True).start()


class _Count:
    def __init__(self) -> None:
        self.n, self.lock = 0, threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            self.n += 1

    def release(self) -> None:
        with self.lock:
            self.n -= 1


_ACTIVE = _Count()


def recording() -> bool:
    """Whether a stream is still being played (a lingering temporary server waits for them)."""
    return _ACTIVE.n > 0
