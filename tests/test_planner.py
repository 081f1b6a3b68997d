"""The pure planner: each backfill parameter's semantics, proven on small projects built in tmp_path."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlglot
import yaml

from backfill.errors import SpecErrors
from backfill.plan.planner import BackfillPlan, LedgerView, expand_timestamps, split_groups
from backfill.plan.validate import validate_project
from backfill.spec.model import DateInterval

TUTORIAL = Path(__file__).resolve().parents[1] / "specs"
TODAY = date(2026, 7, 20)


# ---------------------------------------------------------------- helpers

def table(name: str, sql: str, fields: tuple[str, ...] = ("id", "v"), kind: str = "fact",
          pk: tuple[str, ...] | None = ("id",), granularity: str = "day") -> dict[str, Any]:
    types = {"id": "BIGINT"}
    doc: dict[str, Any] = {"name": name, "kind": kind, "granularity": granularity,
                           "fields": [{"name": f, "type": types.get(f, "VARCHAR")} for f in fields],
                           "sql_inline": sql}
    if pk:
        doc["primary_key"] = list(pk)
    return doc


def root_table(name: str, **kw: Any) -> dict[str, Any]:
    """A table reading nothing: one row whose `v` is its data timestamp."""
    return table(name, "SELECT 1 AS id, CAST('{{ ds }}' AS VARCHAR) AS v\n", **kw)


def child(name: str, *ups: str, **kw: Any) -> dict[str, Any]:
    """A table reading `ups` (joined on id) for the same ds."""
    first, rest = ups[0], ups[1:]
    sql = f"SELECT t0.id, t0.v FROM {{{{ ref('{first}') }}}} AS t0\n"
    for n, up in enumerate(rest, start=1):
        sql += f"JOIN {{{{ ref('{up}') }}}} AS t{n} ON t{n}.id = t0.id AND t{n}.ds = DATE '{{{{ ds }}}}'\n"
    sql += "WHERE t0.ds = DATE '{{ ds }}'\n"
    return table(name, sql, **kw)


def make_project(root: Path, tables: list[dict[str, Any]], backfills: dict[str, dict[str, Any]],
                 **settings: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    proj = {"name": "t", "dialect": "duckdb", "engine": {"type": "duckdb"}, **settings}
    (root / "project.yaml").write_text(yaml.safe_dump(proj, sort_keys=False))
    (root / "tables").mkdir(exist_ok=True)
    (root / "backfills").mkdir(exist_ok=True)
    for t in tables:
        (root / "tables" / f"{t['name']}.yaml").write_text(yaml.safe_dump(t, sort_keys=False))
    for key, bf in backfills.items():
        (root / "backfills" / f"{key}.yaml").write_text(yaml.safe_dump(bf, sort_keys=False))
    return root


def plan_of(root: Path, key: str, ledger: LedgerView | None = None, today: date = TODAY) -> BackfillPlan:
    validated = validate_project(root, today=today, ledger=ledger, only=[key])
    (plan,) = validated.plans
    return plan


def plan1(tmp_path: Path, tables: list[dict[str, Any]], ledger: LedgerView | None = None,
          today: date = TODAY, **backfill: Any) -> BackfillPlan:
    """Plan one backfill `bf` over `tables`; `targets` may be given as a list of table names."""
    targets = backfill.pop("targets", [tables[0]["name"]])
    backfill["targets"] = [t if isinstance(t, dict) else {"table": t} for t in targets]
    backfill.setdefault("name", "bf")
    root = make_project(tmp_path / "p", tables, {"bf": backfill})
    return plan_of(root, "bf", ledger, today)


def dss(plan: BackfillPlan, table_name: str | None = None) -> list[str]:
    return [i.ds for i in plan.instances if table_name is None or i.table == table_name]


def days(start: str, n: int) -> list[str]:
    from datetime import timedelta

    d0 = date.fromisoformat(start)
    return [(d0 + timedelta(days=k)).isoformat() for k in range(n)]


CHAIN = [root_table("a"), child("b", "a"), child("c", "b")]


# ---------------------------------------------------------------- data timestamps

def test_interval_is_inclusive(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], data_timestamp={"start": "2026-07-01", "end": "2026-07-05"})
    assert dss(plan) == days("2026-07-01", 5)
    assert [i.id for i in plan.instances][0] == "bf/a/2026-07-01"


def test_interval_across_a_month_and_a_year_end(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], data_timestamp={"start": "2025-12-30", "end": "2026-01-02"})
    assert dss(plan) == ["2025-12-30", "2025-12-31", "2026-01-01", "2026-01-02"]


def test_several_intervals_overlapping_are_deduplicated(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], data_timestamp=[
        {"start": "2026-07-04", "end": "2026-07-08"},
        {"start": "2026-07-01", "end": "2026-07-05"},
        {"start": "2026-07-20", "end": "2026-07-21"},
    ])
    assert dss(plan) == days("2026-07-01", 8) + ["2026-07-20", "2026-07-21"]
    assert len({i.id for i in plan.instances}) == len(plan.instances)


def test_list_of_dates_sorted_and_deduplicated(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], data_timestamp=["2026-07-09", "2026-07-01", "2026-07-09"])
    assert dss(plan) == ["2026-07-01", "2026-07-09"]


def test_dates_and_intervals_mixed_in_one_list(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], data_timestamp=[
        "2026-07-03", {"start": "2026-07-01", "end": "2026-07-04"}, "2026-07-10"])
    assert dss(plan) == ["2026-07-01", "2026-07-02", "2026-07-03", "2026-07-04", "2026-07-10"]


def test_single_date(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], data_timestamp="2026-02-28")
    assert dss(plan) == ["2026-02-28"]
    assert plan.group_dates == (("2026-02-28",),)


def test_default_is_yesterday_relative_to_today(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], today=date(2026, 3, 1))
    assert dss(plan) == ["2026-02-28"]
    assert "'2026-02-28'" in plan.instances[0].sql
    plan = plan1(tmp_path / "other", [root_table("a")], today=date(2026, 1, 1))
    assert dss(plan) == ["2025-12-31"]


HOURLY = root_table("h", granularity="hour")


def test_hourly_table_takes_an_hour_interval(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [HOURLY], data_timestamp={"start": "2026-07-01T22", "end": "2026-07-02T01"})
    assert dss(plan) == ["2026-07-01T22", "2026-07-01T23", "2026-07-02T00", "2026-07-02T01"]
    assert plan.instances[0].id == "bf/h/2026-07-01T22"


def test_hour_forms_with_minutes_and_seconds(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [HOURLY], data_timestamp={"start": "2026-07-01T05:00", "end": "2026-07-01 06:00:00"})
    assert dss(plan) == ["2026-07-01T05", "2026-07-01T06"]


def test_a_day_interval_expands_to_24_hours_for_an_hourly_table(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [HOURLY], data_timestamp={"start": "2026-07-01", "end": "2026-07-02"})
    assert dss(plan) == [f"2026-07-0{d}T{h:02d}" for d in (1, 2) for h in range(24)]


def test_a_single_date_gives_24_hours_and_the_default_too(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [HOURLY], data_timestamp="2026-07-01")
    assert dss(plan) == [f"2026-07-01T{h:02d}" for h in range(24)]
    plan = plan1(tmp_path / "d", [HOURLY], today=date(2026, 7, 2))
    assert dss(plan) == [f"2026-07-01T{h:02d}" for h in range(24)]


def test_an_hour_interval_for_a_daily_table_gives_its_days(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], data_timestamp={"start": "2026-07-01T22", "end": "2026-07-02T01"})
    assert dss(plan) == ["2026-07-01", "2026-07-02"]


def test_expand_timestamps_directly() -> None:
    d = datetime
    ivs = [DateInterval(d(2026, 7, 1), d(2026, 7, 3)), DateInterval(d(2026, 7, 2), d(2026, 7, 4))]
    assert expand_timestamps(ivs, hourly=False) == [d(2026, 7, k) for k in range(1, 5)]
    assert len(expand_timestamps(ivs[:1], hourly=True)) == 72
    hours = [DateInterval(d(2026, 7, 1, 23), d(2026, 7, 2, 1), hourly=True)]
    assert expand_timestamps(hours, hourly=True) == [d(2026, 7, 1, 23), d(2026, 7, 2, 0), d(2026, 7, 2, 1)]


# ---------------------------------------------------------------- groups and order

@pytest.mark.parametrize(("n", "groups", "sizes"), [
    (10, 3, [4, 3, 3]), (3, 5, [1, 1, 1]), (7, 1, [7]), (12, 12, [1] * 12), (30, 12, [3] * 6 + [2] * 6),
    (1, 12, [1]), (0, 3, []),
])
def test_split_groups(n: int, groups: int, sizes: list[int]) -> None:
    ds = [date(2026, 1, 1).fromordinal(date(2026, 1, 1).toordinal() + k) for k in range(n)]
    chunks = split_groups(ds, groups)
    assert [len(c) for c in chunks] == sizes
    assert [x for c in chunks for x in c] == ds  # consecutive, nothing lost or repeated


def test_ten_dates_in_three_groups_order_and_position(tmp_path: Path) -> None:
    plan = plan1(tmp_path, CHAIN, targets=["c", "a", "b"], groups=3,
                 data_timestamp={"start": "2026-07-01", "end": "2026-07-10"})
    all_days = days("2026-07-01", 10)
    assert plan.group_dates == (tuple(all_days[:4]), tuple(all_days[4:7]), tuple(all_days[7:]))
    assert plan.tables == ("a", "b", "c")
    # group by group, date by date, tables in dependency order inside a date
    expected = [(g, p, d, t) for g, chunk in enumerate(plan.group_dates, start=1)
                for p, d in enumerate(chunk) for t in ("a", "b", "c")]
    assert [(i.group, i.position, i.ds, i.table) for i in plan.instances] == expected
    assert len(plan.instances) == 30


def test_fewer_dates_than_groups(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], groups=5, data_timestamp=["2026-07-01", "2026-07-02", "2026-07-03"])
    assert plan.group_dates == (("2026-07-01",), ("2026-07-02",), ("2026-07-03",))
    assert [(i.group, i.position) for i in plan.instances] == [(1, 0), (2, 0), (3, 0)]


def test_one_group_holds_every_date_in_order(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], groups=1, data_timestamp={"start": "2026-07-01", "end": "2026-07-06"})
    assert plan.group_dates == (tuple(days("2026-07-01", 6)),)
    assert [i.position for i in plan.instances] == list(range(6))
    assert {i.group for i in plan.instances} == {1}


def test_twelve_groups(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], groups=12, data_timestamp={"start": "2026-07-01", "end": "2026-07-30"})
    assert [len(g) for g in plan.group_dates] == [3] * 6 + [2] * 6
    assert [d for g in plan.group_dates for d in g] == days("2026-07-01", 30)
    assert max(i.group for i in plan.instances) == 12


def test_groups_default_to_one(tmp_path: Path) -> None:
    plan = plan1(tmp_path, [root_table("a")], data_timestamp={"start": "2026-07-01", "end": "2026-07-03"})
    assert len(plan.group_dates) == 1


def test_descending_reverses_dates_and_group_contents(tmp_path: Path) -> None:
    plan = plan1(tmp_path, CHAIN, targets=["a", "b", "c"], groups=3, order="descending",
                 data_timestamp={"start": "2026-07-01", "end": "2026-07-10"})
    rev = list(reversed(days("2026-07-01", 10)))
    assert plan.group_dates == (tuple(rev[:4]), tuple(rev[4:7]), tuple(rev[7:]))
    assert plan.group_dates[0][0] == "2026-07-10"  # group 1 holds the LATEST dates
    assert plan.order == "descending"
    # still dependency order inside a date
    expected = [(g, p, d, t) for g, chunk in enumerate(plan.group_dates, start=1)
                for p, d in enumerate(chunk) for t in ("a", "b", "c")]
    assert [(i.group, i.position, i.ds, i.table) for i in plan.instances] == expected


def test_descending_hourly_keeps_tables_in_dependency_order(tmp_path: Path) -> None:
    hd = table("hd", "SELECT h.id, MAX(h.v) AS v FROM {{ ref('h') }} AS h\n"
                     "WHERE CAST(h.ds AS DATE) = DATE '{{ ds }}' GROUP BY h.id\n")
    plan = plan1(tmp_path, [HOURLY, hd], targets=["h", "hd"], order="descending",
                 data_timestamp={"start": "2026-07-01", "end": "2026-07-02"})
    assert plan.group_dates == (("2026-07-02", "2026-07-01"),)
    ids = [i.id for i in plan.instances]
    assert ids[:2] == ["bf/h/2026-07-02T23", "bf/h/2026-07-02T22"]
    assert ids[24] == "bf/hd/2026-07-02"
    assert ids[25] == "bf/h/2026-07-01T23"
    assert ids[-1] == "bf/hd/2026-07-01"


# ---------------------------------------------------------------- scope

#  a -> b -> c -> e -> f ;  a -> d -> e ;  d -> x ;  unrelated z
GRAPH = [root_table("a"), child("b", "a"), child("c", "b"), child("d", "a"), child("e", "c", "d"),
         child("f", "e"), child("x", "d"), root_table("z")]


def test_scope_current_plans_only_the_targets(tmp_path: Path) -> None:
    plan = plan1(tmp_path, GRAPH, targets=["b"], data_timestamp="2026-07-01")
    assert plan.tables == ("b",)
    assert plan.downstream_added == ()
    assert plan.instances[0].upstream == ()  # a is not in the plan


def test_scope_downstream_adds_every_dependent_in_dependency_order(tmp_path: Path) -> None:
    plan = plan1(tmp_path, GRAPH, targets=["a"], scope="downstream", data_timestamp="2026-07-01")
    assert set(plan.tables) == {"a", "b", "c", "d", "e", "f", "x"}
    assert set(plan.downstream_added) == {"b", "c", "d", "e", "f", "x"}
    pos = {t: k for k, t in enumerate(plan.tables)}
    for t, ups in {"b": "a", "c": "b", "d": "a", "e": "cd", "f": "e", "x": "d"}.items():
        assert all(pos[u] < pos[t] for u in ups), (t, plan.tables)
    assert plan.tables == ("a", "b", "c", "d", "e", "f", "x")
    assert [i.table for i in plan.instances] == list(plan.tables)
    # downstream_added is reported in dependency order too
    assert plan.downstream_added == tuple(t for t in plan.tables if t != "a")


def test_scope_downstream_depth(tmp_path: Path) -> None:
    one = plan1(tmp_path / "1", GRAPH, targets=["a"], scope={"mode": "downstream", "depth": 1},
                data_timestamp="2026-07-01")
    assert set(one.downstream_added) == {"b", "d"}
    two = plan1(tmp_path / "2", GRAPH, targets=["a"], scope={"mode": "downstream", "depth": 2},
                data_timestamp="2026-07-01")
    assert set(two.downstream_added) == {"b", "c", "d", "e", "x"}
    assert two.tables == ("a", "b", "c", "d", "e", "x")


def test_scope_downstream_exclude(tmp_path: Path) -> None:
    plan = plan1(tmp_path, GRAPH, targets=["a"], scope={"mode": "downstream", "exclude": ["d"]},
                 data_timestamp="2026-07-01")
    # x depends only through d: gone; e still reaches a through c
    assert set(plan.tables) == {"a", "b", "c", "e", "f"}
    assert "d" not in plan.downstream_added and "x" not in plan.downstream_added
    e = next(i for i in plan.instances if i.table == "e")
    assert e.upstream == ("bf/c/2026-07-01",)


def test_scope_downstream_of_two_targets_in_the_middle(tmp_path: Path) -> None:
    plan = plan1(tmp_path, GRAPH, targets=["c", "d"], scope="downstream", data_timestamp="2026-07-01")
    assert set(plan.tables) == {"c", "d", "e", "f", "x"}
    assert set(plan.downstream_added) == {"e", "f", "x"}


def test_downstream_on_the_tutorial(tmp_path: Path) -> None:
    root = tmp_path / "retail"
    shutil.copytree(TUTORIAL, root, ignore=shutil.ignore_patterns(".backfill", "data"))
    (root / "backfills" / "down.yaml").write_text(
        "name: down\ntargets: [{table: ods_order}]\nscope: downstream\ndata_timestamp: 2026-07-01\n")
    plan = plan_of(root, "down")
    assert plan.tables == ("ods_order", "fct_order_buy_di", "dws_all")
    assert plan.downstream_added == ("fct_order_buy_di", "dws_all")
    dws = next(i for i in plan.instances if i.table == "dws_all")
    assert dws.upstream == ("down/fct_order_buy_di/2026-07-01", "down/ods_order/2026-07-01")


# ---------------------------------------------------------------- upstream

def test_upstream_is_the_same_date_instances_of_upstream_tables_in_the_plan(tmp_path: Path) -> None:
    plan = plan1(tmp_path, GRAPH, targets=["a", "b", "c", "d", "e"], groups=2,
                 data_timestamp={"start": "2026-07-01", "end": "2026-07-04"})
    by_id = {i.id: i for i in plan.instances}
    for d in days("2026-07-01", 4):
        assert by_id[f"bf/a/{d}"].upstream == ()
        assert by_id[f"bf/b/{d}"].upstream == (f"bf/a/{d}",)
        assert by_id[f"bf/e/{d}"].upstream == (f"bf/c/{d}", f"bf/d/{d}")
    # every upstream instance comes earlier in the plan
    seen: set[str] = set()
    for i in plan.instances:
        assert set(i.upstream) <= seen
        seen.add(i.id)


def test_daily_reading_hourly_depends_on_its_24_hours(tmp_path: Path) -> None:
    hd = table("hd", "SELECT h.id, MAX(h.v) AS v FROM {{ ref('h') }} AS h\n"
                     "WHERE CAST(h.ds AS DATE) = DATE '{{ ds }}' GROUP BY h.id\n")
    hh = table("hh", "SELECT t0.id, t0.v FROM {{ ref('h') }} AS t0 WHERE t0.ds = TIMESTAMP '{{ ts }}'\n",
               granularity="hour")  # hourly reading hourly: the same hour
    plan = plan1(tmp_path, [HOURLY, hd, hh], targets=["h", "hd", "hh"], groups=2,
                 data_timestamp={"start": "2026-07-01", "end": "2026-07-02"})
    by_id = {i.id: i for i in plan.instances}
    assert len(plan.instances) == 24 * 2 + 2 + 24 * 2
    assert by_id["bf/hd/2026-07-02"].upstream == tuple(f"bf/h/2026-07-02T{h:02d}" for h in range(24))
    assert by_id["bf/hh/2026-07-01T05"].upstream == ("bf/h/2026-07-01T05",)
    assert plan.group_dates == (("2026-07-01",), ("2026-07-02",))
    assert {i.group for i in plan.instances if i.ds.startswith("2026-07-02")} == {2}
    assert {i.position for i in plan.instances} == {0}


def test_hourly_reading_daily_depends_on_that_day(tmp_path: Path) -> None:
    hourly_child = child("hc", "a", granularity="hour")
    plan = plan1(tmp_path, [root_table("a"), hourly_child], targets=["a", "hc"], data_timestamp="2026-07-01")
    by_id = {i.id: i for i in plan.instances}
    assert by_id["bf/hc/2026-07-01T13"].upstream == ("bf/a/2026-07-01",)
    assert plan.instances[0].id == "bf/a/2026-07-01"


# ---------------------------------------------------------------- field selection

def _tutorial(tmp_path: Path, backfill: str, key: str = "sel") -> Path:
    root = tmp_path / "retail"
    if not root.exists():
        shutil.copytree(TUTORIAL, root, ignore=shutil.ignore_patterns(".backfill", "data"))
    (root / "backfills" / f"{key}.yaml").write_text(backfill)
    return root


SELECT_AMT = "name: sel\ntargets: [{table: dws_all, fields: [order_amt_1d]}]\ndata_timestamp: 2026-07-03\n"


def _outer_columns(sql: str) -> list[str]:
    return [s.alias_or_name for s in sqlglot.parse_one(sql, read="duckdb").expressions]


def test_field_selection_prunes_the_sql_and_pulls_in_linked_fields(tmp_path: Path) -> None:
    plan = plan_of(_tutorial(tmp_path, SELECT_AMT), "sel")
    (inst,) = plan.instances
    assert inst.fields == ("order_amt_1d",)
    assert inst.linked == ("avg_order_amt_1d",)
    assert _outer_columns(inst.sql) == ["customer_id", "order_amt_1d", "avg_order_amt_1d"]
    assert "'2026-07-03'" in inst.sql and "'2026-06-27'" in inst.sql  # ds and ds_add(ds, -6)
    # still one valid SELECT
    (stmt,) = sqlglot.parse(inst.sql, read="duckdb")
    assert isinstance(stmt, sqlglot.exp.Select)
    # fingerprint of what runs differs from the whole table's
    assert inst.fingerprint != inst.table_fingerprint
    whole = plan_of(_tutorial(tmp_path, "name: whole\ntargets: [{table: dws_all}]\ndata_timestamp: 2026-07-03\n",
                              key="whole"), "whole").instances[0]
    assert whole.fingerprint == whole.table_fingerprint == inst.table_fingerprint
    assert inst.fingerprint != whole.fingerprint
    assert whole.fields is None and whole.linked == ()
    assert _outer_columns(whole.sql) == ["customer_id", "order_cnt_1d", "order_amt_1d", "avg_order_amt_1d",
                                         "product_cnt_1d", "order_cnt_7d"]


def test_linked_is_symmetric_and_unlinked_fields_stay_alone(tmp_path: Path) -> None:
    root = _tutorial(tmp_path, "name: sel\ntargets: [{table: dws_all, fields: [avg_order_amt_1d]}]\n"
                               "data_timestamp: 2026-07-03\n")
    (inst,) = plan_of(root, "sel").instances
    assert inst.linked == ("order_amt_1d",)
    root = _tutorial(tmp_path, "name: sel\ntargets: [{table: dws_all, fields: [order_cnt_7d]}]\n"
                               "data_timestamp: 2026-07-03\n")
    (inst,) = plan_of(root, "sel").instances
    assert inst.linked == ()
    assert _outer_columns(inst.sql) == ["customer_id", "order_cnt_7d"]


def test_field_selection_without_primary_key_is_an_error_at_validate(tmp_path: Path) -> None:
    nokey = table("nokey", "SELECT 1 AS id, CAST('{{ ds }}' AS VARCHAR) AS v\n", pk=None)
    root = make_project(tmp_path / "p", [nokey], {"bf": {"name": "bf", "targets": [{"table": "nokey",
                                                                                   "fields": ["v"]}]}})
    with pytest.raises(SpecErrors) as info:
        validate_project(root, today=TODAY)
    (err,) = info.value.errors
    assert err.message == ("table 'nokey' has no primary_key, so it cannot take a field selection; "
                           "declare primary_key in its spec or backfill the entire table")
    assert err.file == "backfills/bf.yaml"
    assert err.one_line().startswith("error: backfills/bf.yaml:")
    assert "targets[0].fields" in err.one_line()


def test_field_selection_on_a_downstream_added_table_is_entire(tmp_path: Path) -> None:
    root = _tutorial(tmp_path, "name: sel\ntargets: [{table: fct_order_buy_di, fields: [amount]}]\n"
                               "scope: downstream\ndata_timestamp: 2026-07-03\n")
    plan = plan_of(root, "sel")
    fct, dws = plan.instances
    assert fct.fields == ("amount",)
    assert _outer_columns(fct.sql) == ["order_id", "amount"]
    assert dws.fields is None and dws.fingerprint == dws.table_fingerprint


# ---------------------------------------------------------------- skip, dry run, name

def test_skip_and_dry_run_lists(tmp_path: Path) -> None:
    plan = plan1(tmp_path, CHAIN, targets=["a", "b", "c"], skip=["b"], dry_run=["c"],
                 data_timestamp={"start": "2026-07-01", "end": "2026-07-02"})
    assert {(i.table, i.mode) for i in plan.instances} == {("a", "run"), ("b", "skip"), ("c", "dry_run")}


def test_skip_all_and_dry_run_all(tmp_path: Path) -> None:
    plan = plan1(tmp_path / "s", CHAIN, targets=["a", "b"], skip="all", data_timestamp="2026-07-01")
    assert {i.mode for i in plan.instances} == {"skip"}
    plan = plan1(tmp_path / "d", CHAIN, targets=["a", "b"], dry_run="all", data_timestamp="2026-07-01")
    assert {i.mode for i in plan.instances} == {"dry_run"}
    plan = plan1(tmp_path / "n", CHAIN, targets=["a", "b"], skip="none", dry_run="none", data_timestamp="2026-07-01")
    assert {i.mode for i in plan.instances} == {"run"}


def test_a_named_table_wins_over_all_and_applies_to_downstream_added(tmp_path: Path) -> None:
    plan = plan1(tmp_path / "s", CHAIN, targets=["a"], scope="downstream", skip=["c"], dry_run="all",
                 data_timestamp="2026-07-01")
    assert [(i.table, i.mode) for i in plan.instances] == [("a", "dry_run"), ("b", "dry_run"), ("c", "skip")]
    plan = plan1(tmp_path / "d", CHAIN, targets=["a"], scope="downstream", skip="all", dry_run=["b"],
                 data_timestamp="2026-07-01")
    assert [(i.table, i.mode) for i in plan.instances] == [("a", "skip"), ("b", "dry_run"), ("c", "skip")]


def _unnamed(tmp_path: Path, ledger: LedgerView | None = None) -> BackfillPlan:
    root = make_project(tmp_path / "p", CHAIN, {"reload": {"targets": [{"table": "b"}, {"table": "a"}],
                                                           "data_timestamp": "2026-07-01"}})
    return plan_of(root, "reload", ledger)


def test_default_name(tmp_path: Path) -> None:
    plan = _unnamed(tmp_path)
    assert plan.name == "b_20260720_1"
    assert plan.key == "reload"
    assert all(i.id.startswith("b_20260720_1/") for i in plan.instances)


def test_default_name_sequence_skips_taken_names(tmp_path: Path) -> None:
    plan = _unnamed(tmp_path, LedgerView(taken_names=frozenset({"b_20260720_1", "b_20260720_2", "b_20260719_3"})))
    assert plan.name == "b_20260720_3"


def test_default_name_recorded_for_the_spec_is_reused(tmp_path: Path) -> None:
    ledger = LedgerView(names={"reload": "b_20260701_4"}, taken_names=frozenset({"b_20260701_4"}))
    plan = _unnamed(tmp_path, ledger)
    assert plan.name == "b_20260701_4"
    assert plan.instances[0].id == "b_20260701_4/a/2026-07-01"


def test_explicit_name_wins(tmp_path: Path) -> None:
    plan = plan1(tmp_path, CHAIN, ledger=LedgerView(names={"bf": "old"}), name="mine", data_timestamp="2026-07-01")
    assert plan.name == "mine"


def test_two_unnamed_backfills_with_the_same_first_target_get_distinct_names(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", CHAIN, {
        "one": {"targets": [{"table": "a"}], "data_timestamp": "2026-07-01"},
        "two": {"targets": [{"table": "a"}], "data_timestamp": "2026-07-01"},
    })
    plans = validate_project(root, today=TODAY).plans
    names = [p.name for p in plans]
    assert len(set(names)) == 2, names
    assert sorted(names) == ["a_20260720_1", "a_20260720_2"]


# ---------------------------------------------------------------- actions against the ledger

def _one(tmp_path: Path, ledger: LedgerView | None = None, **kw: Any) -> BackfillPlan:
    kw.setdefault("data_timestamp", "2026-07-01")
    return plan1(tmp_path, CHAIN, ledger=ledger, targets=["b"], **kw)


def test_action_new_on_an_empty_ledger(tmp_path: Path) -> None:
    plan = _one(tmp_path)
    assert plan.instances[0].action == "new"
    assert plan.counts() == {"new": 1, "stale": 0, "done": 0, "failed": 0}


def test_action_done_by_a_whole_table_record(tmp_path: Path) -> None:
    fp = _one(tmp_path / "x").instances[0].table_fingerprint
    plan = _one(tmp_path, LedgerView(partitions={("b", "2026-07-01"): {"*": fp}}))
    assert plan.instances[0].action == "done"
    assert plan.to_run == ()


def test_action_done_by_per_field_records(tmp_path: Path) -> None:
    fp = _one(tmp_path / "x").instances[0].table_fingerprint
    plan = _one(tmp_path, LedgerView(partitions={("b", "2026-07-01"): {"*": "0ld", "id": fp, "v": fp}}))
    assert plan.instances[0].action == "done"
    plan = _one(tmp_path / "y", LedgerView(partitions={("b", "2026-07-01"): {"*": "0ld", "v": fp}}))
    assert plan.instances[0].action == "stale"  # id still carries the old fingerprint


def test_action_stale_when_recorded_with_another_fingerprint(tmp_path: Path) -> None:
    plan = _one(tmp_path, LedgerView(partitions={("b", "2026-07-01"): {"*": "another"}}))
    assert plan.instances[0].action == "stale"
    other_day = _one(tmp_path / "o", LedgerView(partitions={("b", "2026-06-30"): {"*": "another"}}))
    assert other_day.instances[0].action == "new"


@pytest.mark.parametrize("status", ["failed", "killed", "blocked", "paused"])
def test_action_failed_when_the_last_run_failed(tmp_path: Path, status: str) -> None:
    fp = _one(tmp_path / "x").instances[0].fingerprint
    plan = _one(tmp_path, LedgerView(instances={"bf/b/2026-07-01": (status, fp)}))
    assert plan.instances[0].action == "failed"
    # over a partition written before (by its earlier success, or another backfill) too: what `instances`
    # calls failed, apply runs; it never says "every instance is done" of a backfill that shows a failure
    over = _one(tmp_path / "d", LedgerView(instances={"bf/b/2026-07-01": (status, fp)},
                                           partitions={("b", "2026-07-01"): {"*": fp}}))
    assert (over.instances[0].action, over.instances[0].reason) == ("failed", f"last run {status}")


def test_a_successful_instance_record_alone_is_not_done(tmp_path: Path) -> None:
    fp = _one(tmp_path / "x").instances[0].fingerprint
    plan = _one(tmp_path, LedgerView(instances={"bf/b/2026-07-01": ("success", fp)}))
    assert plan.instances[0].action == "new"


def test_field_selection_actions(tmp_path: Path) -> None:
    root = _tutorial(tmp_path, SELECT_AMT)
    inst = plan_of(root, "sel").instances[0]
    fp = inst.table_fingerprint
    key = ("dws_all", "2026-07-03")

    def action(stored: dict[str, str]) -> str:
        return plan_of(root, "sel", LedgerView(partitions={key: stored})).instances[0].action

    assert action({"*": fp}) == "done"
    assert action({"*": "old", "order_amt_1d": fp, "avg_order_amt_1d": fp}) == "done"
    assert action({"*": "old", "order_amt_1d": fp}) == "stale"  # its linked field is not current
    assert action({"*": "old"}) == "stale"
    assert action({}) == "new"


@pytest.mark.parametrize(("mode", "recorded"), [("skip", "paused"), ("dry_run", "dry_run")])
def test_skip_and_dry_run_done_only_by_their_own_record(tmp_path: Path, mode: str, recorded: str) -> None:
    base = _one(tmp_path / "x", None, **{mode: "all"}).instances[0]
    assert base.mode == mode and base.action == "new"
    fp = base.fingerprint
    current_partition = {("b", "2026-07-01"): {"*": base.table_fingerprint}}
    # a current partition does not make a skipped / dry-run instance done
    assert _one(tmp_path / "p", LedgerView(partitions=current_partition), **{mode: "all"}).instances[0].action == "new"
    assert _one(tmp_path / "r", LedgerView(instances={"bf/b/2026-07-01": (recorded, fp)}),
                **{mode: "all"}).instances[0].action == "done"
    assert _one(tmp_path / "f", LedgerView(instances={"bf/b/2026-07-01": (recorded, "other")}),
                **{mode: "all"}).instances[0].action == "new"
    assert _one(tmp_path / "s", LedgerView(instances={"bf/b/2026-07-01": ("success", fp)}),
                **{mode: "all"}).instances[0].action == "new"


def test_counts_and_to_run_mix(tmp_path: Path) -> None:
    ref = _one(tmp_path / "x", data_timestamp={"start": "2026-07-01", "end": "2026-07-04"})
    fps = {i.ds: i.table_fingerprint for i in ref.instances}
    ledger = LedgerView(
        partitions={("b", "2026-07-01"): {"*": fps["2026-07-01"]}, ("b", "2026-07-02"): {"*": "old"}},
        instances={"bf/b/2026-07-03": ("failed", "zzz")},
    )
    plan = _one(tmp_path, ledger, data_timestamp={"start": "2026-07-01", "end": "2026-07-04"})
    assert [i.action for i in plan.instances] == ["done", "stale", "failed", "new"]
    assert plan.counts() == {"new": 1, "stale": 1, "done": 1, "failed": 1}
    assert [i.ds for i in plan.to_run] == ["2026-07-02", "2026-07-03", "2026-07-04"]


def test_plan_is_deterministic(tmp_path: Path) -> None:
    a = plan1(tmp_path / "1", GRAPH, targets=["a"], scope="downstream", groups=3,
              data_timestamp={"start": "2026-07-01", "end": "2026-07-09"})
    b = plan1(tmp_path / "2", list(reversed(GRAPH)), targets=["a"], scope="downstream", groups=3,
              data_timestamp={"start": "2026-07-01", "end": "2026-07-09"})
    assert a == b


def test_default_names_avoid_explicit_names_and_stay_stable_once_recorded(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", CHAIN, {
        "explicit": {"name": "a_20260720_1", "targets": [{"table": "b"}], "data_timestamp": "2026-07-01"},
        "one": {"targets": [{"table": "a"}], "data_timestamp": "2026-07-01"},
        "two": {"targets": [{"table": "a"}], "data_timestamp": "2026-07-01"},
    })
    names = {p.key: p.name for p in validate_project(root, today=TODAY).plans}
    assert names == {"explicit": "a_20260720_1", "one": "a_20260720_2", "two": "a_20260720_3"}
    # planning one backfill alone gives it the same name
    assert plan_of(root, "two").name == "a_20260720_3"
    # once `two` is applied (its name recorded), `one` keeps its name and `two` keeps its own
    ledger = LedgerView(names={"two": "a_20260720_3"}, taken_names=frozenset({"a_20260720_3"}))
    names = {p.key: p.name for p in validate_project(root, today=TODAY, ledger=ledger).plans}
    assert names == {"explicit": "a_20260720_1", "one": "a_20260720_2", "two": "a_20260720_3"}


def test_pruned_sql_runs_and_equals_the_whole_tables_columns(tmp_path: Path) -> None:
    import duckdb

    root = _tutorial(tmp_path, SELECT_AMT)
    validated = validate_project(root, today=TODAY, only=["sel"])
    (pruned,) = validated.plans[0].instances
    whole = validated.compiler.compile(validated.project.tables["dws_all"], datetime(2026, 7, 3), {}, "2026-07-03")
    assert not isinstance(whole, list)
    con = duckdb.connect()
    for name in ("fct_order_buy_di", "ods_order"):
        t = validated.project.tables[name]
        cols = ", ".join(f"{f.name} {f.type}" for f in t.fields)
        con.execute(f"CREATE TABLE {name} ({cols}, ds DATE)")
    con.execute("INSERT INTO ods_order VALUES (1, TIMESTAMP '2026-07-03 10:00', 7, 1, 1, 10.00, DATE '2026-07-03'),"
                " (2, TIMESTAMP '2026-06-30 10:00', 8, 1, 1, 5.00, DATE '2026-06-30')")
    con.execute("INSERT INTO fct_order_buy_di (order_id, customer_id, product_id, amount, ds) VALUES "
                "(1, 7, 1, 10.00, DATE '2026-07-03'), (3, 7, 2, 5.01, DATE '2026-07-03')")
    full = {r[0]: r for r in con.execute(whole.sql).fetchall()}
    part = {r[0]: r for r in con.execute(pruned.sql).fetchall()}
    assert set(full) == set(part) == {7, 8}
    for key, row in part.items():
        assert row == (full[key][0], full[key][2], full[key][3])  # customer_id, order_amt_1d, avg_order_amt_1d
    assert part[7][1:] == (Decimal("15.01"), Decimal("7.51"))


def test_an_interval_ending_on_a_day_covers_that_whole_day_for_hourly_tables() -> None:
    from datetime import datetime as dt

    from backfill.plan.planner import expand_timestamps
    from backfill.spec.timestamps import parse_timestamp

    start, end = parse_timestamp("2026-07-01T22"), parse_timestamp("2026-07-02")
    iv = DateInterval(start[0], end[0], start[1] and end[1], start_hour=start[1], end_hour=end[1])
    hours = expand_timestamps([iv], hourly=True)
    assert hours[0] == dt(2026, 7, 1, 22) and hours[-1] == dt(2026, 7, 2, 23) and len(hours) == 26
    assert expand_timestamps([iv], hourly=False) == [dt(2026, 7, 1), dt(2026, 7, 2)]


# ---------------------------------------------------------------- data staleness through dependencies

def _all_done(plan: BackfillPlan, written: dict[tuple[str, str], float] | None = None) -> LedgerView:
    """A ledger in which every instance of `plan` was written with its current SQL."""
    parts = {(i.table, i.ds): {"*": i.table_fingerprint} for i in plan.instances}
    return LedgerView(partitions=parts, written=written or {(i.table, i.ds): 1.0 for i in plan.instances})


def test_a_downstream_partition_reruns_when_its_upstream_instance_runs(tmp_path: Path) -> None:
    first = plan1(tmp_path, CHAIN, targets=["a", "b", "c"], data_timestamp={"start": "2026-07-01", "end": "2026-07-03"})
    current = _all_done(first)
    assert {i.action for i in plan_of(tmp_path / "p", "bf", current).instances} == {"done"}
    # a's SQL changes on 07-02 only: b and c of 07-02 must run after it, nothing else
    parts = dict(current.partitions)
    parts[("a", "2026-07-02")] = {"*": "older-sql"}
    plan = plan_of(tmp_path / "p", "bf", LedgerView(partitions=parts, written=current.written))
    running = {(i.table, i.ds): (i.action, i.reason) for i in plan.instances if i.action != "done"}
    assert running == {
        ("a", "2026-07-02"): ("stale", "SQL changed"),
        ("b", "2026-07-02"): ("stale", "upstream a/2026-07-02 runs first"),
        ("c", "2026-07-02"): ("stale", "upstream b/2026-07-02 runs first"),
    }


def test_a_partition_is_stale_when_its_upstream_was_rewritten_after_it(tmp_path: Path) -> None:
    first = plan1(tmp_path, CHAIN, targets=["b", "c"], data_timestamp={"start": "2026-07-01", "end": "2026-07-02"})
    written = {(i.table, i.ds): 10.0 for i in first.instances}
    written[("a", "2026-07-01")] = 5.0   # older than b: fine
    written[("a", "2026-07-02")] = 20.0  # a (not in this backfill) was rewritten after b of 07-02
    plan = plan_of(tmp_path / "p", "bf", _all_done(first, written))
    running = {(i.table, i.ds): i.reason for i in plan.instances if i.action != "done"}
    assert running == {("b", "2026-07-02"): "upstream a 2026-07-02 rewritten after",
                       ("c", "2026-07-02"): "upstream b/2026-07-02 runs first"}


def test_a_dry_run_upstream_does_not_force_its_downstream(tmp_path: Path) -> None:
    first = plan1(tmp_path, CHAIN, targets=["a", "b"], data_timestamp="2026-07-01")
    plan = plan1(tmp_path / "again", CHAIN, ledger=_all_done(first), targets=["a", "b"], data_timestamp="2026-07-01",
                 dry_run=["a"])
    assert {(i.table, i.action) for i in plan.instances} == {("a", "new"), ("b", "done")}


def test_backfills_of_one_apply_run_in_dependency_order(tmp_path: Path) -> None:
    from backfill.run.decide import order_backfills

    root = make_project(tmp_path / "p", CHAIN, {
        "a_reads_nothing": {"name": "zz_first", "targets": [{"table": "a"}], "data_timestamp": "2026-07-01"},
        "b_reads_a": {"name": "aa_second", "targets": [{"table": "b"}], "data_timestamp": "2026-07-01"},
        "c_reads_b": {"name": "mm_third", "targets": [{"table": "c"}], "data_timestamp": "2026-07-01"},
    })
    validated = validate_project(root, today=TODAY)
    wanted = ["zz_first", "aa_second", "mm_third"]  # writers before readers, whatever the names or files
    for given in (validated.plans, tuple(reversed(validated.plans))):
        assert [p.name for p in order_backfills(given, validated.graph)] == wanted
