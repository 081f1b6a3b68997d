"""Warehouse engines: where the tool writes partitions, atomically, one instance at a time."""

from __future__ import annotations

import os
import threading

from ...spec.model import Project
from .base import CancelToken, Engine, EngineError, WriteCancelled, WriteRequest

__all__ = ["CancelToken", "Engine", "EngineError", "EngineOpening", "WriteCancelled", "WriteRequest",
           "open_engine"]


def open_engine(project: Project, read_only: bool = False) -> Engine:
    """The project's warehouse: DuckDB (a file under the project) or PostgreSQL (URL from the env)."""
    cfg = project.engine
    if cfg.type == "duckdb":
        from .duckdb_engine import DuckDBEngine

        return DuckDBEngine(cfg.path, project.root, read_only=read_only, threads=cfg.threads,
                            sources=project.sources, timeout=project.timeout)
    if cfg.type == "postgres":
        from .postgres_engine import PostgresEngine

        if not cfg.url_env:
            raise EngineError("engine.url_env must name the environment variable holding the PostgreSQL URL")
        url = os.environ.get(cfg.url_env, "").strip()
        if not url:
            raise EngineError(f"environment variable {cfg.url_env} (engine.url_env) is not set: "
                              "set it to a postgresql:// URL")
        if not url.startswith(("postgresql://", "postgres://", "postgresql+", "postgres+")):
            raise EngineError(f"environment variable {cfg.url_env} must hold a postgresql:// URL")
        return PostgresEngine(url, cfg.schema, project.root, pool_size=max(1, project.max_parallel) + 1,
                              read_only=read_only, sources=project.sources, timeout=project.timeout)
    raise EngineError(f"unknown engine type '{cfg.type}'")


class EngineOpening:
    """The project's engine, opened on a thread of its own while the caller goes on (a DuckDB file
    takes 10-60 ms to open); `engine()` waits for it and raises what opening it raised.

    `close()` closes it, waiting at most `wait` seconds for an opening still under way (a caller
    stopped by a signal before it needed the engine, with a PostgreSQL server that does not answer):
    an engine that opens after that is closed by its own thread at once, never left open."""

    def __init__(self, project: Project) -> None:
        self._opened: Engine | None = None
        self._failed: BaseException | None = None
        self._lock = threading.Lock()
        self._closed = False

        def open_it() -> None:
            try:
                engine = open_engine(project)
            except BaseException as exc:  # noqa: BLE001 - raised by engine(), in the caller's thread
                self._failed = exc
                return
            with self._lock:
                if not self._closed:
                    self._opened = engine
                    return
            engine.close()

        self._thread = threading.Thread(target=open_it, name="open-warehouse", daemon=True)
        self._thread.start()

    def engine(self) -> Engine:
        self._thread.join()
        if self._failed is not None:
            raise self._failed
        assert self._opened is not None  # opened, and not closed yet
        return self._opened

    def close(self, wait: float = 5.0) -> None:
        self._thread.join(wait)
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()
