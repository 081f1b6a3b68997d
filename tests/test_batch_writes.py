"""Batched writes on both engines: one statement, one transaction, one marker per partition."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest
from test_engines import BAD, VALUES, Factory, factory, kind, make_table, rows_of  # noqa: F401

from backfill.run.engines import EngineError
from backfill.run.engines.batch import BatchMember, BatchRequest

sys.path.insert(0, str(Path(__file__).parent))
from conftest_pg import pg_server  # noqa: E402, F401

D = [date(2026, 7, d) for d in (1, 2, 3, 4)]


def member(ds: date, sql: str, run: str = "r1") -> BatchMember:
    return BatchMember(ds.isoformat(), f"bf/t/{ds}", f"{run}:bf/t/{ds}:1", "fp", sql)


def markers(eng: object) -> list[tuple[object, ...]]:
    # (attempt id, ds, rows); the attempt ids are `run:bf/t/DS:1`
    found = eng.query('SELECT attempt_id, "rows" FROM _backfill_commits')  # type: ignore[attr-defined]
    return sorted((a, str(a).rsplit(":", 1)[0].rsplit("/", 1)[1], n) for a, n in found)


def test_tool_batched_members_replace_exactly_their_partitions(factory: Factory) -> None:  # noqa: F811
    eng = factory(t := make_table())
    outside = VALUES.format("(9, 'keep', 0.5)")
    eng.write_batch(BatchRequest(t, (member(D[3], outside, "r0"),)))  # a partition outside the batch
    req = BatchRequest(t, (member(D[0], VALUES.format("(1, 'x', 1.5), (2, 'y', 2.5)")),
                           member(D[1], VALUES.format("(3, 'z', 3.5)")),
                           member(D[2], "SELECT 1 AS id, 'a' AS a, 1.0 AS b WHERE false")))
    assert eng.write_batch(req) == {"2026-07-01": 2, "2026-07-02": 1, "2026-07-03": 0}
    assert eng.write_batch(req) == {"2026-07-01": 2, "2026-07-02": 1, "2026-07-03": 0}  # replaces, no doubles
    assert rows_of(eng, "t") == [(1, "x", 1.5, D[0]), (2, "y", 2.5, D[0]), (3, "z", 3.5, D[1]),
                                 (9, "keep", 0.5, D[3])]
    assert [m[2] for m in markers(eng) if str(m[0]).startswith("r1")] == [2, 2, 1, 1, 0, 0]


def test_range_template_rows_outside_the_batch_are_left_out(factory: Factory) -> None:  # noqa: F811
    eng = factory(t := make_table())
    range_sql = ("SELECT id, a, b, CAST(ds AS DATE) AS ds FROM (VALUES (1, 'x', 1.0, '2026-07-01'), "
                 "(2, 'y', 2.0, '2026-07-02'), (3, 'out', 3.0, '2026-07-04')) AS v(id, a, b, ds)")
    req = BatchRequest(t, (member(D[0], "unused"), member(D[1], "unused")), range_sql=range_sql, ranged=True)
    assert eng.write_batch(req) == {"2026-07-01": 1, "2026-07-02": 1}
    assert rows_of(eng, "t") == [(1, "x", 1.0, D[0]), (2, "y", 2.0, D[1])]
    alone = BatchRequest(t, (member(D[1], range_sql, "r2"),), ranged=True)  # one partition of it, alone
    assert eng.write_batch(alone) == {"2026-07-02": 1}
    assert rows_of(eng, "t") == [(1, "x", 1.0, D[0]), (2, "y", 2.0, D[1])]


def test_a_failing_member_leaves_every_partition_of_the_batch_old(factory: Factory) -> None:  # noqa: F811
    eng = factory(t := make_table())
    old = BatchRequest(t, (member(D[0], VALUES.format("(1, 'old', 1.0)"), "r0"),
                           member(D[1], VALUES.format("(2, 'old', 2.0)"), "r0")))
    eng.write_batch(old)
    before, marks = rows_of(eng, "t"), markers(eng)
    new = BatchRequest(t, (member(D[0], VALUES.format("(1, 'new', 1.0)")), member(D[1], BAD)))
    with pytest.raises(EngineError) as info:
        eng.write_batch(new)
    assert "t partitions 2026-07-01..2026-07-02 in one batch failed" in str(info.value)
    assert rows_of(eng, "t") == before
    assert markers(eng) == marks
