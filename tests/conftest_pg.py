"""A PostgreSQL server for tests: fresh schemas with a per-run unique prefix, dropped afterwards.

Not a conftest.py: a test module imports `pg_server` from here (see tests/test_engines.py).
The server is taken from BACKFILL_TEST_PG_URL (default: the local trust-auth test database);
when it is unreachable the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

PG_URL = os.environ.get("BACKFILL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class PgServer:
    url: str
    prefix: str
    conn: Any
    schemas: list[str] = field(default_factory=list)

    def new_schema(self) -> str:
        """A schema name unused so far (the engine creates it); dropped at the end of the run."""
        name = f"{self.prefix}_{len(self.schemas)}"
        self.schemas.append(name)
        return name


def _hostport(url: str) -> str:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    return rest.rsplit("@", 1)[-1]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        import psycopg

        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means: no server for these tests
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        pytest.skip(f"PostgreSQL not reachable at {_hostport(PG_URL)}: {first}")
    server = PgServer(PG_URL, f"bf_test_{os.getpid()}_{uuid.uuid4().hex[:8]}", conn)
    try:
        yield server
    finally:
        for schema in server.schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()
