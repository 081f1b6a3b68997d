"""Warehouse engines: where the tool writes partitions, atomically, one instance at a time."""

from __future__ import annotations

import os

from ...spec.model import Project
from .base import CancelToken, Engine, EngineError, WriteCancelled, WriteRequest

__all__ = ["CancelToken", "Engine", "EngineError", "WriteCancelled", "WriteRequest", "open_engine"]


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
