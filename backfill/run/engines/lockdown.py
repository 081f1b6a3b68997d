"""How engines run template SQL locked down: no files but the source folders, no settings, no
extensions, and a time limit per instance."""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["DUCKDB_CONFIG", "TimeLimit", "lock_down_duckdb", "shadowed_sources", "time_limit"]

# given at connect: known extensions are never fetched nor loaded behind the tool's back
DUCKDB_CONFIG: dict[str, Any] = {"autoload_known_extensions": False, "autoinstall_known_extensions": False}


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def shadowed_sources(root: Path, sources: Iterable[str]) -> str | None:
    """Why DuckDB would read other files than the project's: it opens a relative path against the
    current directory before `file_search_path`, so a source folder of the same name there wins."""
    for folder in (s.strip("/") for s in sources):
        here = Path.cwd() / folder
        try:
            if here.exists() and here.resolve() != (root / folder).resolve():
                return (f"the current directory {Path.cwd()} has a '{folder}/' of its own, which DuckDB would "
                        f"read instead of the project's source folder {root / folder}; run backfill from the "
                        "project's folder (or from a folder without one)")
        except (OSError, RuntimeError):
            return f"'{here}' cannot be resolved (a symbolic link loop?)"
    return None


def lock_down_duckdb(con: Any, root: Path, sources: Iterable[str]) -> None:
    """Make `con` read only files under the project's source folders, then lock its configuration.

    Paths relative to the project resolve through `file_search_path`; DuckDB checks a path as it is
    written, so each folder is allowed both relative (`data/`) and absolute (`/project/data/`)."""
    folders = [s.strip("/") for s in sources]
    allowed = [f"{f}/" for f in folders] + [f"{(root / f).resolve()}/" for f in folders]
    con.execute(f"SET GLOBAL file_search_path = {_sql_text(str(root))}")
    con.execute("SET GLOBAL allowed_directories = [" + ", ".join(_sql_text(a) for a in allowed) + "]")
    con.execute("SET GLOBAL enable_external_access = false")
    con.execute("SET GLOBAL lock_configuration = true")


class TimeLimit:
    """Set when an instance's time limit interrupted its SQL."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False

    def message(self, table: str) -> str:
        return (f"timed out after {self.seconds:g} s; raise `timeout` in tables/{table}.yaml "
                "(or the project's default in project.yaml) if it needs longer")


class _Watchdog:
    """One thread for every time limit of the process: a thread per write cost ~1 ms of start-up."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, list[Any]]] = []  # (deadline, seq, [expire or None])
        self._seq = 0
        self._thread: threading.Thread | None = None

    def add(self, seconds: float, expire: Callable[[], None]) -> list[Any]:
        entry: list[Any] = [expire]
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + seconds, self._seq, entry))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="time-limits", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is entry:
                self._cond.notify()
        return entry

    def cancel(self, entry: list[Any]) -> None:
        """After this returns the interrupt has run already or never will (expiry holds the lock)."""
        with self._cond:
            entry[0] = None  # the heap drops it when its deadline comes

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2][0] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(60)
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                _, _, entry = heapq.heappop(self._heap)
                expire, entry[0] = entry[0], None
                expire()  # under the lock: a block that has left cannot be interrupted afterwards


_WATCHDOG = _Watchdog()


@contextmanager
def time_limit(seconds: float | TimeLimit | None, interrupt: Callable[[], None]) -> Iterator[TimeLimit]:
    """Call `interrupt` once `seconds` have passed inside the block (no limit when None)."""
    limit = seconds if isinstance(seconds, TimeLimit) else TimeLimit(seconds)
    if not limit.seconds:
        yield limit
        return

    def expire() -> None:
        limit.expired = True
        with contextlib.suppress(Exception):  # an interrupt that fails leaves the statement to finish
            interrupt()

    entry = _WATCHDOG.add(limit.seconds, expire)
    try:
        yield limit
    finally:
        _WATCHDOG.cancel(entry)
