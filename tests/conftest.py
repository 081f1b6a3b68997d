"""Shared test set-up: a private PREFECT_HOME, no telemetry, and one Prefect server per session.

The first flow of a process would otherwise start a temporary server (10-17 s). Tests that execute
backfills use the `prefect_api` fixture: a real `prefect server start` on a free loopback port,
started once per session; in-process flows and `backfill` subprocesses both talk to it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="backfill-tests-prefect-"))
os.environ["PREFECT_HOME"] = str(_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.pop("PREFECT_API_URL", None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """URL of a Prefect server for this test session (PREFECT_API_URL is set while it lives)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = open(_HOME / "server.log", "w")  # noqa: SIM115 - closed below
    prefect = Path(sys.executable).parent / "prefect"
    # only the task run recorder: it turns task run events into the records the UI (and a test) reads
    quiet = {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in (
        "CANCELLATION_CLEANUP", "DB_VACUUM", "EVENT_LOGGER", "FOREMAN", "LATE_RUNS", "SCHEDULER",
        "PAUSE_EXPIRATIONS", "REPOSSESSOR", "CLEANUP_RECONCILER", "TRIGGERS", "EVENT_PERSISTER")}
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **quiet, "PREFECT_API_URL": url},
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise RuntimeError("prefect server did not start:\n" + (_HOME / "server.log").read_text()[-3000:])
        time.sleep(0.3)
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture()
def tutorial(tmp_path: Path) -> Path:
    """A fresh copy of the retail tutorial project (two backfills, see tutorial_copy.py) with its source data."""
    from tutorial_copy import copy_tutorial

    from backfill.spec.tutorial import generate_source_data

    project = tmp_path / "retail"
    copy_tutorial(project)
    generate_source_data(project)
    return project


sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/oracle.py and helpers


TUTORIAL_TABLES = ("ods_product", "ods_customer", "ods_order", "dim_products", "dim_customer",
                   "fct_order_buy_di", "dws_all")


def warehouse_rows(project: Path, table: str, ds: str) -> list[tuple[object, ...]]:
    """Rows of one partition, read back from the DuckDB file in declared field order, sorted like the oracle."""
    import duckdb
    import oracle
    import yaml

    spec = yaml.safe_load((project / "tables" / f"{table}.yaml").read_text())
    cols = ", ".join(f'"{f["name"]}"' for f in spec["fields"])
    con = duckdb.connect(str(project / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(f'SELECT {cols} FROM "{table}" WHERE ds = CAST(? AS DATE)', [ds]).fetchall()
    finally:
        con.close()
    return oracle.sort_rows(rows)
