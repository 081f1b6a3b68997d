"""The warehouse engines on real databases: DuckDB files in tmp_path and a local PostgreSQL."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

import pytest

from backfill.run.engines import CancelToken, Engine, EngineError, WriteCancelled, WriteRequest, open_engine
from backfill.run.engines.duckdb_engine import DuckDBEngine
from backfill.run.engines.pg_common import pg_type
from backfill.run.engines.postgres_engine import PostgresEngine
from backfill.spec.model import EngineConfig, Field, Project, Table, Template

sys.path.insert(0, str(Path(__file__).parent))
from conftest_pg import PgServer, pg_server  # noqa: E402, F401

FIELDS = (("id", "BIGINT"), ("a", "VARCHAR"), ("b", "DOUBLE"))
VALUES = "SELECT * FROM (VALUES {}) AS v(id, a, b)"
D1, D2 = "2026-07-01", "2026-07-02"

# dialect-specific SQL, by engine
SLOW = {"duckdb": "SELECT count(*) AS id, 'slow' AS a, 1.0 AS b FROM range(100000000000) AS r(x) "
                  "WHERE x % 7 = 3",
        "postgres": "SELECT 1 AS id, 'slow' AS a, 1.0 AS b FROM pg_sleep(30)"}
MANY = {"duckdb": "SELECT x AS id, 'r' AS a, x * 0.5 AS b FROM range(1000) AS r(x)",
        "postgres": "SELECT x AS id, 'r' AS a, x * 0.5 AS b FROM generate_series(0, 999) AS x"}
BAD = ("SELECT id, CAST(CASE WHEN id = 2 THEN 'x' ELSE '7' END AS INTEGER) AS a, 1.0 AS b "
       "FROM (VALUES (1), (2)) AS v(id)")


def make_table(name: str = "t", fields: Sequence[tuple[str, str]] = FIELDS, *, kind: str = "fact",
               hourly: bool = False, pk: tuple[str, ...] = ("id",)) -> Table:
    return Table(name=name, kind=kind,  # type: ignore[arg-type]
                 fields=tuple(Field(n, t) for n, t in fields), template=Template("SELECT 1", "x.sql"),
                 spec_file=f"tables/{name}.yaml", granularity="hour" if hourly else "day", primary_key=pk)


_seq = iter(range(1_000_000))


def wreq(table: Table, ds: str, sql: str, fields: tuple[str, ...] | None = None,
         attempt: str | None = None) -> WriteRequest:
    return WriteRequest(table=table, ds=ds, sql=sql, fields=fields, instance_id=f"bf/{table.name}/{ds}",
                        attempt_id=attempt or f"att-{next(_seq)}", fingerprint="fp")


def rows_of(engine: Engine, table: str, ds: object | None = None) -> list[tuple[object, ...]]:
    where, params = (" WHERE ds = ?", [ds]) if ds is not None else ("", [])
    return sorted(engine.query(f'SELECT id, a, b, ds FROM "{table}"{where}', params),
                  key=lambda r: (str(r[3]), str(r[0])))


Factory = Callable[..., Engine]


@pytest.fixture(params=["duckdb", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def factory(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Factory]:
    opened: list[Engine] = []
    server: PgServer | None = request.getfixturevalue("pg_server") if kind == "postgres" else None
    schema = server.new_schema() if server else ""

    def make(*tables: Table) -> Engine:
        engine: Engine = PostgresEngine(server.url, schema, tmp_path, pool_size=4) if server \
            else DuckDBEngine(".backfill/w.duckdb", tmp_path)
        opened.append(engine)
        engine.ensure_tables(tables)
        return engine

    yield make
    for engine in opened:
        engine.close()


def test_full_replace_is_idempotent_and_leaves_other_partitions(factory: Factory) -> None:
    eng = factory(t := make_table())
    sql = VALUES.format("(1, 'x', 1.5), (2, 'y', 2.5)")
    assert eng.write_partition(wreq(t, D1, sql)) == 2
    assert eng.write_partition(wreq(t, D2, VALUES.format("(9, 'z', 0.0)"))) == 1
    assert eng.write_partition(wreq(t, D1, sql)) == 2
    d1, d2 = date(2026, 7, 1), date(2026, 7, 2)
    assert rows_of(eng, "t") == [(1, "x", 1.5, d1), (2, "y", 2.5, d1), (9, "z", 0.0, d2)]
    assert eng.write_partition(wreq(t, D1, VALUES.format("(3, 'w', 3.0)"))) == 1
    assert rows_of(eng, "t") == [(3, "w", 3.0, d1), (9, "z", 0.0, d2)]


def test_failing_select_keeps_old_partition_and_writes_no_marker(factory: Factory, kind: str) -> None:
    eng = factory(t := make_table())
    eng.write_partition(wreq(t, D1, VALUES.format("(1, 'x', 1.5)")))
    before = rows_of(eng, "t")
    for fields in (None, ("a",)):
        bad = wreq(t, D1, BAD, fields=fields)
        with pytest.raises(EngineError) as info:
            eng.write_partition(bad)
        msg = str(info.value)
        assert "t partition 2026-07-01 failed" in msg
        assert ("Could not convert" in msg) if kind == "duckdb" else ("invalid input syntax" in msg)
        assert eng.committed_attempt(bad.attempt_id) is None
        assert rows_of(eng, "t") == before


def test_committed_attempt(factory: Factory) -> None:
    eng = factory(t := make_table())
    req = wreq(t, D1, VALUES.format("(1, 'x', 1.5), (2, 'y', 2.5)"))
    assert eng.committed_attempt(req.attempt_id) is None
    eng.write_partition(req)
    assert eng.committed_attempt(req.attempt_id) == 2
    marker = eng.query('SELECT attempt_id, "rows" FROM _backfill_commits WHERE attempt_id = ?', [req.attempt_id])
    assert marker == [(req.attempt_id, 2)]
    assert eng.committed_attempts(req.attempt_id) == [(req.attempt_id, 2)]


def test_field_selection(factory: Factory) -> None:
    eng = factory(t := make_table())
    eng.write_partition(wreq(t, D1, VALUES.format("(1, 'x', 1.5), (2, 'y', 2.5)")))
    eng.write_partition(wreq(t, D2, VALUES.format("(1, 'other', 9.0)")))
    sel = "SELECT * FROM (VALUES (2, 'Y'), (3, 'new')) AS v(id, a)"
    assert eng.write_partition(wreq(t, D1, sel, fields=("a",))) == 2
    assert eng.write_partition(wreq(t, D1, sel, fields=("a",))) == 2  # idempotent
    d1, d2 = date(2026, 7, 1), date(2026, 7, 2)
    assert rows_of(eng, "t") == [(1, "x", 1.5, d1), (2, "Y", 2.5, d1), (3, "new", None, d1),
                                 (1, "other", 9.0, d2)]


def test_cancel_during_long_query(factory: Factory, kind: str) -> None:
    eng = factory(t := make_table())
    eng.write_partition(wreq(t, D1, VALUES.format("(1, 'x', 1.5)")))
    before = rows_of(eng, "t")
    for fields in (None, ("a",)):
        token = CancelToken()
        req = wreq(t, D1, SLOW[kind], fields=fields)
        timer = threading.Timer(0.5, token.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(WriteCancelled):
            eng.write_partition(req, token)
        assert time.monotonic() - started < 10
        timer.join()
        assert eng.committed_attempt(req.attempt_id) is None
        assert rows_of(eng, "t") == before
    # the engine still works afterwards, and a token cancelled beforehand stops the write at once
    token = CancelToken()
    token.cancel()
    with pytest.raises(WriteCancelled):
        eng.write_partition(wreq(t, D1, VALUES.format("(5, 'q', 1.0)")), token)
    assert eng.write_partition(wreq(t, D1, VALUES.format("(5, 'q', 1.0)"))) == 1


def test_parallel_writers_one_table(factory: Factory, kind: str) -> None:
    eng = factory(t := make_table())
    errors: list[BaseException] = []
    counts: dict[str, int] = {}

    def write(ds: str) -> None:
        try:
            for _ in range(2):
                counts[ds] = eng.write_partition(wreq(t, ds, MANY[kind]))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    dates = [f"2026-07-{d:02d}" for d in range(1, 9)]
    threads = [threading.Thread(target=write, args=(ds,)) for ds in dates]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert counts == {ds: 1000 for ds in dates}
    got = eng.query('SELECT CAST(ds AS VARCHAR), count(*), count(DISTINCT id) FROM "t" GROUP BY 1 ORDER BY 1')
    assert got == [(ds, 1000, 1000) for ds in dates]


def test_hourly_partitions(factory: Factory) -> None:
    t = make_table("h", hourly=True)
    eng = factory(t)
    eng.write_partition(wreq(t, "2026-07-01T03", VALUES.format("(1, 'x', 1.5)")))
    eng.write_partition(wreq(t, "2026-07-01T04", VALUES.format("(2, 'y', 2.5)")))
    eng.write_partition(wreq(t, "2026-07-01T03", VALUES.format("(3, 'z', 3.5)")))
    h3, h4 = datetime(2026, 7, 1, 3), datetime(2026, 7, 1, 4)
    assert rows_of(eng, "h") == [(3, "z", 3.5, h3), (2, "y", 2.5, h4)]
    assert rows_of(eng, "h", h4) == [(2, "y", 2.5, h4)]


def test_ensure_tables_adds_declared_columns(factory: Factory) -> None:
    eng = factory(t := make_table())
    eng.ensure_tables([t])  # idempotent
    eng.write_partition(wreq(t, D1, VALUES.format("(1, 'x', 1.5)")))
    wider = make_table(fields=(*FIELDS, ("c", "DECIMAL(18,2)")))
    eng.ensure_tables([wider])
    eng.ensure_tables([wider])
    assert eng.query('SELECT id, c FROM "t"') == [(1, None)]
    eng.write_partition(wreq(wider, D1, "SELECT * FROM (VALUES (1, 2.25)) AS v(id, c)", fields=("c",)))
    assert [(r[0], float(r[1])) for r in eng.query('SELECT id, c FROM "t"')] == [(1, 2.25)]  # type: ignore[arg-type]


def test_integration_table_reads_project_files(factory: Factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.csv").write_text("id,name,amount\n1,apple,1.5\n2,pear,2.5\n3,fig,\n", encoding="utf-8")
    t = make_table("ods_orders", kind="integration")
    eng = factory(t)
    sql = "SELECT amount AS b, id, name AS a FROM read_csv('data/orders.csv')"
    assert eng.write_partition(wreq(t, D1, sql)) == 3
    assert eng.write_partition(wreq(t, D1, sql)) == 3
    d1 = date(2026, 7, 1)
    assert rows_of(eng, "ods_orders") == [(1, "apple", 1.5, d1), (2, "pear", 2.5, d1), (3, "fig", None, d1)]
    sel = "SELECT id, upper(name) AS a FROM read_csv('data/orders.csv') WHERE id > 1"
    assert eng.write_partition(wreq(t, D1, sel, fields=("a",))) == 2
    assert [r[1] for r in rows_of(eng, "ods_orders")] == ["apple", "PEAR", "FIG"]
    assert eng.explain(sql, t) is None
    assert eng.explain("SELECT nope FROM read_csv('data/orders.csv')", t) is not None


def test_explain(factory: Factory) -> None:
    eng = factory(make_table())
    assert eng.explain('SELECT id, a, b FROM "t"') is None
    err = eng.explain('SELECT id, missing_col FROM "t"')
    assert err and "missing_col" in err and "\n" not in err


def test_query_placeholders_and_trailing_semicolons(factory: Factory) -> None:
    eng = factory(t := make_table())
    eng.write_partition(wreq(t, D1, VALUES.format("(1, 'x?', 1.5), (2, 'y', 2.5)") + " -- two rows\n;\n"))
    assert eng.query("SELECT id FROM \"t\" WHERE a = 'x?' AND id % 2 = ?", [1]) == [(1,)]
    assert eng.write_partition(wreq(t, D1, "SELECT 1 AS id, 'k' AS a; ", fields=("a",))) == 1
    assert eng.query("SELECT a FROM \"t\" WHERE id = ?", [1]) == [("k",)]


def test_read_only_duckdb(tmp_path: Path) -> None:
    t = make_table()
    missing = DuckDBEngine("w.duckdb", tmp_path, read_only=True)
    assert missing.committed_attempt("nope") is None
    missing.close()
    eng = DuckDBEngine("w.duckdb", tmp_path)
    eng.ensure_tables([t])
    req = wreq(t, D1, VALUES.format("(1, 'x', 1.5)"))
    eng.write_partition(req)
    eng.close()
    ro = DuckDBEngine("w.duckdb", tmp_path, read_only=True)
    assert ro.committed_attempt(req.attempt_id) == 1
    with pytest.raises(EngineError, match="read-only"):
        ro.write_partition(wreq(t, D2, VALUES.format("(1, 'x', 1.5)")))
    ro.close()


def _project(tmp_path: Path, engine: EngineConfig) -> Project:
    return Project(name="p", root=tmp_path, tables={}, backfills={}, engine=engine)


def test_open_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eng = open_engine(_project(tmp_path, EngineConfig(path="sub/dir/w.duckdb", threads=2)))
    assert isinstance(eng, DuckDBEngine) and (tmp_path / "sub/dir/w.duckdb").exists()
    eng.close()
    monkeypatch.delenv("BF_TEST_WAREHOUSE", raising=False)
    with pytest.raises(EngineError, match="BF_TEST_WAREHOUSE"):
        open_engine(_project(tmp_path, EngineConfig(type="postgres", url_env="BF_TEST_WAREHOUSE")))


def test_open_engine_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              request: pytest.FixtureRequest) -> None:
    server: PgServer = request.getfixturevalue("pg_server")
    monkeypatch.setenv("BF_TEST_WAREHOUSE", server.url.replace("postgresql://", "postgres://", 1))
    cfg = EngineConfig(type="postgres", url_env="BF_TEST_WAREHOUSE", schema=server.new_schema())
    eng = open_engine(_project(tmp_path, cfg))
    assert eng.dialect == "postgres"
    assert eng.query("SELECT current_schema()") == [(cfg.schema,)]
    eng.close()


def test_pg_types() -> None:
    expected = {"DOUBLE": "DOUBLE PRECISION", "double": "DOUBLE PRECISION", "FLOAT": "REAL",
                "VARCHAR": "VARCHAR", "BIGINT": "BIGINT", "DECIMAL(18,2)": "DECIMAL(18,2)", "DATE": "DATE"}
    assert {k: pg_type(k) for k in expected} == expected


def test_duckdb_retries_a_transaction_conflict(tmp_path: Path) -> None:
    t = make_table()
    eng = DuckDBEngine("w.duckdb", tmp_path)
    eng.ensure_tables([t])
    eng.write_partition(wreq(t, D1, VALUES.format("(1, 'x', 1.5)")))
    blocker = eng._con.cursor()  # another transaction deleting the same rows: a real conflict
    blocker.execute("BEGIN")
    blocker.execute("DELETE FROM \"t\" WHERE ds = DATE '2026-07-01'")
    timer = threading.Timer(0.1, lambda: blocker.execute("ROLLBACK"))
    timer.start()
    assert eng.write_partition(wreq(t, D1, VALUES.format("(2, 'y', 2.5)"))) == 1  # retried until free
    timer.join()
    blocker.execute("BEGIN")
    blocker.execute("DELETE FROM \"t\" WHERE ds = DATE '2026-07-01'")
    with pytest.raises(EngineError, match="Conflict"):  # still held after every retry
        eng.write_partition(wreq(t, D1, VALUES.format("(3, 'z', 3.5)")))
    blocker.execute("ROLLBACK")
    assert rows_of(eng, "t") == [(2, "y", 2.5, date(2026, 7, 1))]
    eng.close()


def test_cancel_token() -> None:
    calls: list[str] = []
    token = CancelToken()
    token.on_cancel(lambda: calls.append("first"))
    token.clear()
    token.cancel()
    assert token.cancelled and calls == []  # cleared: nothing to interrupt
    token.on_cancel(lambda: calls.append("late"))  # registered after cancel(): interrupted at once
    assert calls == ["late"]

    def broken() -> None:
        raise RuntimeError("interrupt failed")

    other = CancelToken()
    other.on_cancel(broken)
    other.cancel()  # a failing interrupt does not reach the canceller
    assert other.cancelled

