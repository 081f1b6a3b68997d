"""How the DuckDB engine sends a write: values of ours as literals (BEGIN, the DELETE and the INSERT in
one round trip, the marker row with the COMMIT), still one transaction, still interruptible."""

from __future__ import annotations

import threading
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from conftest_pg import PgServer, pg_server  # noqa: F401 - the fixture

from backfill.run.engines import CancelToken, EngineError, WriteCancelled, WriteRequest
from backfill.run.engines.base import sql_literal
from backfill.run.engines.duckdb_engine import DuckDBEngine
from backfill.run.engines.postgres_engine import PostgresEngine
from backfill.spec.model import Field, Table, Template

HOSTILE = ["plain", "it's", "''", "a'); DROP TABLE t; --", "back\\slash", "{rows}", "new\nline", "ünïcode ✓", ""]


def table(name: str = "t", hourly: bool = False) -> Table:
    return Table(name=name, kind="fact", fields=(Field("id", "BIGINT"), Field("a", "VARCHAR")),
                 template=Template("SELECT 1", "x.sql"), spec_file=f"tables/{name}.yaml",
                 granularity="hour" if hourly else "day", primary_key=("id",))


@pytest.mark.parametrize("value", [*HOSTILE, None, True, False, 0, -7, 2**62, date(2026, 7, 1),
                                   datetime(2026, 7, 1, 5), datetime(2026, 7, 1, 5, 6, 7, 891011)])
def test_sql_literal_reads_back_as_the_value(value: object) -> None:
    con = duckdb.connect()
    assert con.execute(f"SELECT {sql_literal(value)}").fetchall() == [(value,)]


def test_sql_literal_refuses_what_it_cannot_quote() -> None:
    with pytest.raises(EngineError):
        sql_literal("a\x00b")
    with pytest.raises(TypeError):
        sql_literal(1.5)


@pytest.mark.parametrize("odd", HOSTILE[1:])
def test_marker_row_holds_ids_exactly(tmp_path: Path, odd: str) -> None:
    t = table()
    eng = DuckDBEngine("w.duckdb", tmp_path)
    eng.ensure_tables([t])
    req = WriteRequest(table=t, ds="2026-07-01", sql="SELECT 1 AS id, 'x' AS a", fields=None,
                       instance_id=f"bf/t/{odd}", attempt_id=f"run:{odd}:1", fingerprint=odd)
    assert eng.write_partition(req) == 1
    assert eng.committed_attempt(req.attempt_id) == 1
    assert eng.query('SELECT attempt_id, "rows" FROM _backfill_commits') == [(f"run:{odd}:1", 1)]
    assert eng.committed_attempts("run:") == [(f"run:{odd}:1", 1)]
    assert eng.committed_attempts(f"run:{odd}:2") == []
    assert eng.query("SELECT id, a, ds FROM t") == [(1, "x", date(2026, 7, 1))]
    eng.close()


def test_hourly_partition_literal_deletes_only_its_hour(tmp_path: Path) -> None:
    t = table(hourly=True)
    eng = DuckDBEngine("w.duckdb", tmp_path)
    eng.ensure_tables([t])
    for ds, sql in (("2026-07-01T05", "SELECT 1 AS id, 'a' AS a"), ("2026-07-01T06", "SELECT 2 AS id, 'b' AS a"),
                    ("2026-07-01T05", "SELECT 3 AS id, 'c' AS a")):
        eng.write_partition(WriteRequest(table=t, ds=ds, sql=sql, fields=None, instance_id=f"bf/t/{ds}",
                                         attempt_id=f"r:{ds}:{sql}", fingerprint="fp"))
    assert sorted(eng.query("SELECT id, ds FROM t")) == [(2, datetime(2026, 7, 1, 6)), (3, datetime(2026, 7, 1, 5))]
    eng.close()


def test_cancel_before_commit_leaves_nothing(tmp_path: Path) -> None:
    """A cancel that lands after the SELECT ran and before the COMMIT went out: no data, no marker."""
    t = table()
    eng = DuckDBEngine("w.duckdb", tmp_path)
    eng.ensure_tables([t])
    token = CancelToken()
    real = eng._statements

    def then_cancel(req: WriteRequest, value: object, run: object) -> int:
        rows = real(req, value, run)  # type: ignore[arg-type]
        token.cancel()
        return rows

    eng._statements = then_cancel  # type: ignore[method-assign]
    req = WriteRequest(table=t, ds="2026-07-01", sql="SELECT 1 AS id, 'x' AS a", fields=None,
                       instance_id="bf/t/2026-07-01", attempt_id="r:1", fingerprint="fp")
    with pytest.raises(WriteCancelled):
        eng.write_partition(req, token)
    assert eng.committed_attempt("r:1") is None
    assert eng.query("SELECT count(*) FROM t") == [(0,)]
    eng.close()


def test_a_failed_write_leaves_the_cursor_usable(tmp_path: Path) -> None:
    """The transaction a failing statement leaves open is rolled back: the thread's next write works."""
    t = table()
    eng = DuckDBEngine("w.duckdb", tmp_path)
    eng.ensure_tables([t])

    def write(sql: str, attempt: str) -> int:
        return eng.write_partition(WriteRequest(table=t, ds="2026-07-01", sql=sql, fields=None,
                                                instance_id="bf/t/2026-07-01", attempt_id=attempt, fingerprint="fp"))

    results: list[object] = []

    def worker() -> None:  # one thread: one kept cursor for both writes
        with pytest.raises(EngineError):
            write("SELECT CAST('x' AS INTEGER) AS id, 'x' AS a", "r:bad")
        results.append(write("SELECT 2 AS id, 'y' AS a", "r:good"))

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert results == [1]
    assert eng.query("SELECT attempt_id FROM _backfill_commits") == [("r:good",)]
    eng.close()


LEGACY = ('CREATE TABLE {schema}_backfill_writes (attempt_id VARCHAR NOT NULL, instance_id VARCHAR, '
          'table_name VARCHAR, ds VARCHAR, fingerprint VARCHAR, "rows" BIGINT, written_at TIMESTAMP)')
LEGACY_ROW = ("INSERT INTO {schema}_backfill_writes VALUES ('old:bf/t/2026-07-01:2', 'bf/t/2026-07-01', 't', "
              "'2026-07-01', 'fp', 5, TIMESTAMP '2026-07-02 00:00:00')")


def _reads_old_and_new_markers(eng: DuckDBEngine | PostgresEngine) -> None:
    """A warehouse written before the marker table had two columns: recovery still finds its commits."""
    try:
        eng.ensure_tables([t := table()])
        assert eng.committed_attempt("old:bf/t/2026-07-01:2") == 5
        req = WriteRequest(table=t, ds="2026-07-01", sql="SELECT 1 AS id, 'x' AS a", fields=None,
                           instance_id="bf/t/2026-07-01", attempt_id="new:bf/t/2026-07-01:1", fingerprint="fp")
        assert eng.write_partition(req) == 1
        for prefix in ("old:", "old:bf/t/2026-07-01:"):
            assert eng.committed_attempts(prefix) == [("old:bf/t/2026-07-01:2", 5)]
        for prefix in ("new:bf/t/", "new:bf/t/2026-07-01:"):
            assert eng.committed_attempts(prefix) == [("new:bf/t/2026-07-01:1", 1)]
        assert eng.committed_attempt("new:bf/t/2026-07-02:1") is None
        assert eng.query('SELECT attempt_id, "rows" FROM _backfill_commits') == [("new:bf/t/2026-07-01:1", 1)]
        assert eng.query("SELECT count(*) FROM _backfill_writes") == [(1,)]  # read, never written
    finally:
        eng.close()


def test_markers_of_an_earlier_version_are_still_read(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(LEGACY.format(schema=""))
    con.execute(LEGACY_ROW.format(schema=""))
    con.close()
    _reads_old_and_new_markers(DuckDBEngine("w.duckdb", tmp_path))


def test_a_read_only_engine_on_an_empty_warehouse_finds_no_commit(tmp_path: Path) -> None:
    eng = DuckDBEngine("missing.duckdb", tmp_path, read_only=True)
    try:
        assert eng.committed_attempt("r:x:1") is None
        assert eng.committed_attempts("r:") == []
    finally:
        eng.close()


def test_postgres_markers_of_an_earlier_version_are_still_read(pg_server: PgServer, tmp_path: Path) -> None:  # noqa: F811
    schema = pg_server.new_schema()
    pg_server.conn.execute(f'CREATE SCHEMA "{schema}"')
    pg_server.conn.execute(LEGACY.format(schema=f'"{schema}".').replace("VARCHAR", "TEXT"))
    pg_server.conn.execute(LEGACY_ROW.format(schema=f'"{schema}".'))
    _reads_old_and_new_markers(PostgresEngine(pg_server.url, schema, tmp_path, pool_size=1))
