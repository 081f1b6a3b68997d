"""Partition lineage in the planner: upstream across dates and groups, cumulative tables, cycles,
the words the plan says about the order, staleness across backfills."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_planner import _all_done, make_project, plan1, plan_of, root_table, table

from backfill.errors import SpecErrors
from backfill.plan.across import stale_across_backfills
from backfill.plan.validate import validate_project

WEEK = table("wk", "SELECT a.id, MAX(a.v) AS v FROM {{ ref('a') }} AS a\n"
                   "WHERE a.ds BETWEEN DATE '{{ ds_add(ds, -2) }}' AND DATE '{{ ds }}' GROUP BY a.id\n")
CUM = table("cum", "SELECT a.id, a.v FROM {{ ref('a') }} AS a WHERE a.ds = DATE '{{ ds }}'\n"
                   "UNION ALL SELECT c.id, c.v FROM {{ ref('cum') }} AS c WHERE c.ds = DATE '{{ ds_add(ds, -1) }}'\n")
DAYS = {"start": "2026-07-01", "end": "2026-07-06"}


def test_a_window_waits_for_every_date_it_reads_in_any_group(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a"), WEEK], targets=["a"], scope="downstream", groups=3,
                 data_timestamp=DAYS)
    by_id = {i.id: i for i in plan.instances}
    assert by_id["bf/wk/2026-07-03"].upstream == ("bf/a/2026-07-01", "bf/a/2026-07-02", "bf/a/2026-07-03")
    assert by_id["bf/wk/2026-07-03"].group == 2 and by_id["bf/a/2026-07-01"].group == 1
    assert dict(by_id["bf/wk/2026-07-01"].reads) == {"a": (("2026-06-29", "2026-07-01"),)}
    assert any("group 2 waits for group 1" in n for n in plan.notes)


def test_a_cumulative_table_reads_its_previous_partition(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a"), CUM], targets=["a", "cum"], groups=3, order="descending",
                 data_timestamp=DAYS)
    by_id = {i.id: i for i in plan.instances}
    assert by_id["bf/cum/2026-07-04"].upstream == ("bf/a/2026-07-04", "bf/cum/2026-07-03")
    assert by_id["bf/cum/2026-07-01"].upstream == ("bf/a/2026-07-01",)  # 06-30 is not in this plan
    assert any("later in the chosen order" in n for n in plan.notes)  # descending: reads go backwards
    assert any("reads chain the dates" in n for n in plan.notes)


def test_a_cycle_among_partitions_is_refused_and_shown(tmp_path: Path) -> None:
    both = table("both", "SELECT b.id, b.v FROM {{ ref('both') }} AS b\n"
                         "WHERE b.ds IN (DATE '{{ ds_add(ds, -1) }}', DATE '{{ ds_add(ds, 1) }}')\n")
    with pytest.raises(SpecErrors) as err:
        plan1(tmp_path, [both], targets=["both"], data_timestamp=DAYS)
    (e,) = err.value.errors
    assert e.message.startswith("partition cycle in table both (A -> B: A reads B): 2026-07-01 -> 2026-07-02 -> "
                                "2026-07-01;")
    own = table("own", "SELECT b.id, b.v FROM {{ ref('own') }} AS b WHERE b.ds <= DATE '{{ ds }}'\n")
    with pytest.raises(SpecErrors) as err:
        plan1(tmp_path / "own", [own], targets=["own"], data_timestamp=DAYS)
    assert "reads its own partition 2026-07-01" in err.value.errors[0].message


def test_no_partition_predicate_reads_every_partition_and_the_plan_says_so(tmp_path: Path) -> None:
    from backfill.plan.explain import plan_to_text

    every = table("every", "SELECT a.id, MAX(a.v) AS v FROM {{ ref('a') }} AS a GROUP BY a.id\n")
    plan = plan1(tmp_path, [root_table("a"), every], targets=["a", "every"], groups=2, data_timestamp=DAYS)
    first = next(i for i in plan.instances if i.table == "every")
    assert dict(first.reads) == {"a": "all"}
    assert len(first.upstream) == 6
    assert "reads every partition of a (no partition predicate)" in plan_to_text([plan])


def test_a_rewrite_in_one_backfill_makes_readers_in_another_stale(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", [root_table("a"), WEEK], {
        "load": {"name": "load", "targets": [{"table": "a"}], "data_timestamp": DAYS},
        "build": {"name": "build", "targets": [{"table": "wk"}], "data_timestamp": DAYS}})
    plans = validate_project(root).plans
    done = {**_all_done(plans[0]).partitions, **_all_done(plans[1]).partitions}
    parts = dict(done)
    parts[("a", "2026-07-03")] = {"*": "older-sql"}  # a of 07-03 runs again in `load`
    from backfill.plan.planner import LedgerView

    view = LedgerView(partitions=parts, written={k: 1.0 for k in parts})
    plans = stale_across_backfills(validate_project(root, ledger=view).plans)
    build = next(p for p in plans if p.name == "build")
    stale = {i.ds: i.reason for i in build.instances if i.action != "done"}
    assert stale == {d: "upstream load/a/2026-07-03 runs first" for d in ("2026-07-03", "2026-07-04", "2026-07-05")}
    assert plan_of(root, "build", view).counts()["stale"] == 0  # alone, its own plan cannot know


def test_read_ranges_enumerate_partitions_across_month_year_and_day_ends() -> None:
    from backfill.plan.readiness import _LIMIT, _partitions

    assert list(_partitions("2024-02-27", "2024-03-01", False)) == [
        "2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01"]
    assert list(_partitions("2025-12-31", "2026-01-01", False)) == ["2025-12-31", "2026-01-01"]
    assert list(_partitions("2026-03-01T22", "2026-03-02T01", True)) == [
        "2026-03-01T22", "2026-03-01T23", "2026-03-02T00", "2026-03-02T01"]
    assert list(_partitions("2026-03-02", "2026-03-01", False)) == []
    assert len(list(_partitions("1900-01-01", "2199-12-31", False))) == _LIMIT  # a window, not a century
