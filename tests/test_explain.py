"""Explaining a plan: a text summary, byte-stable JSON and a markdown table per backfill."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from tutorial_copy import copy_tutorial

from backfill.plan.explain import plan_to_json, plan_to_markdown, plan_to_text
from backfill.plan.planner import BackfillPlan, LedgerView
from backfill.plan.validate import validate_project

TUTORIAL = Path(__file__).resolve().parents[1] / "specs"
TODAY = date(2026, 7, 20)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "retail"
    copy_tutorial(root)
    (root / "backfills" / "zz_fields.yaml").write_text(
        "name: zz_fields\ntargets: [{table: dws_all, fields: [order_amt_1d]}, {table: dim_products}]\n"
        "scope: downstream\ndata_timestamp: [2026-07-02, 2026-07-01]\norder: descending\ngroups: 2\n"
        "skip: [fct_order_buy_di]\ndry_run: [dim_products]\nruntime: 2026-08-01T02:00:00\n")
    return root


def plans(root: Path, ledger: LedgerView | None = None) -> tuple[BackfillPlan, ...]:
    return validate_project(root, today=TODAY, ledger=ledger).plans


def test_text_summary(project: Path) -> None:
    text = plan_to_text(plans(project))
    assert text.endswith("Plan: 122 new, 0 stale, 0 failed, 0 done. Apply would run 122 instance(s).\n")
    assert "backfill tutorial_logical  (backfills/logical_tables.yaml)" in text
    assert "  runtime immediately, order ascending, 3 group(s), 56 instance(s)" in text
    assert "  group 1: 5 date(s) 2026-07-01 -> 2026-07-05" in text
    assert re.search(r"^  dws_all +14 +0 +0 +0  2026-07-01 \.\. 2026-07-14$", text, re.M)


def test_text_notes_for_modes_fields_and_downstream(project: Path) -> None:
    text = plan_to_text([p for p in plans(project) if p.name == "zz_fields"])
    assert "runtime 2026-08-01T02:00:00, order descending, 2 group(s)" in text
    assert "  group 1: 1 date(s) 2026-07-02 -> 2026-07-02" in text
    assert re.search(r"^  dws_all .*\[fields order_amt_1d; linked avg_order_amt_1d\]$", text, re.M)
    assert re.search(r"^  dim_products .*\[dry-run\]$", text, re.M)
    assert re.search(r"^  fct_order_buy_di .*\[skip \(ends paused\); downstream\]$", text, re.M)


def test_text_counts_every_action(project: Path) -> None:
    ref = {i.id: i for i in plans(project)[1].instances}
    ledger = LedgerView(
        partitions={("dim_customer", "2026-07-01"): {"*": ref["tutorial_logical/dim_customer/2026-07-01"]
                                                     .table_fingerprint},
                    ("dim_customer", "2026-07-02"): {"*": "old"}},
        instances={"tutorial_logical/dws_all/2026-07-03": ("failed", "x")},
    )
    ps = plans(project, ledger)
    text = plan_to_text(ps, verbose=True)
    assert "Plan: 119 new, 1 stale, 1 failed, 1 done. Apply would run 121 instance(s)." in text
    assert re.search(r"^  dim_customer +12 +1 +0 +1  ", text, re.M)
    assert "    ~ tutorial_logical/dim_customer/2026-07-02  group 1  run  " in text
    assert "    ! tutorial_logical/dws_all/2026-07-03  group 1  run  " in text
    assert "tutorial_logical/dim_customer/2026-07-01  group" not in text  # done: not listed


def test_json_is_byte_stable_and_complete(project: Path) -> None:
    one, two = plan_to_json(plans(project)), plan_to_json(plans(project))
    assert one == two
    doc = json.loads(one)
    assert doc["format"] == "backfill-plan/1"
    assert [b["name"] for b in doc["backfills"]] == ["tutorial_integration", "tutorial_logical", "zz_fields"]
    logical = doc["backfills"][1]
    assert logical["counts"] == {"new": 56, "stale": 0, "failed": 0, "done": 0}
    assert logical["groups"][2] == ["2026-07-11", "2026-07-12", "2026-07-13", "2026-07-14"]
    assert logical["tables"] == ["dim_customer", "dim_products", "fct_order_buy_di", "dws_all"]
    first = logical["instances"][0]
    assert set(first) == {"id", "table", "ds", "group", "position", "mode", "action", "fingerprint",
                          "table_fingerprint", "upstream", "fields", "linked", "reason", "sql", "reads"}
    assert first["fields"] == "all"
    assert first["reads"] == {"ods_customer": [["2026-07-01", "2026-07-01"]]}  # dim_customer of 07-01
    dws_last = logical["instances"][-1]
    assert dws_last["id"] == "tutorial_logical/dws_all/2026-07-14"
    assert dws_last["reads"] == {"fct_order_buy_di": [["2026-07-14", "2026-07-14"]],
                                 "ods_order": [["2026-07-08", "2026-07-14"]]}
    fields = doc["backfills"][2]
    assert fields["runtime"] == "2026-08-01T02:00:00"
    assert fields["downstream_added"] == ["fct_order_buy_di"]
    dws = next(i for i in fields["instances"] if i["table"] == "dws_all")
    assert dws["fields"] == ["order_amt_1d"] and dws["linked"] == ["avg_order_amt_1d"]
    assert fields["groups"] == [["2026-07-02"], ["2026-07-01"]]
    # sorted keys, one space indent, newline at the end
    assert one.endswith("}\n") and one.startswith('{"backfills": [\n')
    assert all(line.startswith('{"') for line in one.splitlines()[1:] if '"action"' in line)  # one per line


def test_json_extra_keys() -> None:
    doc = json.loads(plan_to_json([], {"plan_id": "abc"}))
    assert doc == {"format": "backfill-plan/1", "backfills": [], "plan_id": "abc"}


def test_markdown_has_a_table_per_backfill(project: Path) -> None:
    ps = plans(project)
    md = plan_to_markdown(ps)
    assert md.startswith("## Backfill plan\n")
    assert md.count("| table | new | stale | failed | done | dates | notes |") == len(ps) == 3
    for p in ps:
        assert f"### `{p.name}`" in md
    assert "| `dws_all` | 14 | 0 | 0 | 0 | 2026-07-01 .. 2026-07-14 |  |" in md
    assert ("| `dws_all` | 2 | 0 | 0 | 0 | 2026-07-01 .. 2026-07-02 | "
            "fields order_amt_1d; linked avg_order_amt_1d |") in md
    assert "**60 new, 0 stale, 0 failed, 0 done**" in md
    assert "- group 3: 4 date(s), 2026-07-11 → 2026-07-14" in md
    # every table row has as many cells as the header
    for line in md.splitlines():
        if line.startswith("| `"):
            assert line.count(" | ") == 6, line


def test_hourly_spans(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "tables").mkdir(parents=True)
    (root / "backfills").mkdir()
    (root / "project.yaml").write_text("name: t\n")
    (root / "tables" / "h.yaml").write_text(
        "name: h\nkind: fact\ngranularity: hour\nfields: [{name: id, type: BIGINT}]\nsql_inline: SELECT 1 AS id\n")
    (root / "backfills" / "bf.yaml").write_text(
        "name: bf\ntargets: [{table: h}]\ndata_timestamp: {start: 2026-07-01T22, end: 2026-07-02T03}\n")
    text = plan_to_text(validate_project(root, today=TODAY).plans)
    assert re.search(r"^  h +6 +0 +0 +0  2026-07-01T22 \.\. 2026-07-02T03$", text, re.M)
    assert "group 1: 2 date(s) 2026-07-01 -> 2026-07-02" in text
