"""Pure parts of the operations: the instances page at 80 columns with long names, partition ranges,
what a resume releases. No ledger, no engine: rows are built as the ledger returns them."""

from __future__ import annotations

from dataclasses import replace

from backfill.cli.instances_view import backfill_lines, by_date_lines
from backfill.plan.partition_ranges import expand, ranges_of
from backfill.run.operations import released
from backfill.state.ledger import InstanceRow
from backfill.state.pages import DateCount, PageRow

BASE = InstanceRow(id="", backfill="", table="", ds="", group=1, position=0, seq=0, mode="run", fields=None,
                   linked=(), upstream=(), sql="SELECT 1", fingerprint="f", table_fingerprint="t", status="success",
                   attempts=1, started_at=1_780_000_000.0, ended_at=1_780_000_004.5, rows=1234567, error=None,
                   held=False, kill_requested=False)


def page(r: InstanceRow) -> PageRow:
    return PageRow(r.id, r.backfill, r.table, r.ds, r.group, r.mode, r.status, r.attempts, r.started_at, r.ended_at,
                   r.rows, r.error)


def row(backfill: str, table: str, ds: str, **values: object) -> InstanceRow:
    return replace(BASE, id=f"{backfill}/{table}/{ds}", backfill=backfill, table=table, ds=ds, **values)  # type: ignore[arg-type]


def test_instances_page_never_wider_than_80_columns_whatever_the_names() -> None:
    name = "q3_reload_of_every_customer_metric_after_the_currency_fix_" + "x" * 60
    table = "dws_customer_lifetime_value_by_region_and_channel_" + "y" * 70
    rows = [row(name, table, "2026-07-01T05"),
            row(name, "t", "2026-07-02", status="failed", rows=None,
                error="BinderException: " + "Referenced column \"amount_usd\" not found in FROM clause! " * 5),
            row(name, "u", "2026-07-02", status="blocked", started_at=None, rows=None, attempts=0,
                error=f"upstream {name}/t/2026-07-02 failed")]
    counts = {"blocked": 1, "failed": 1, "success": 1}
    lines = backfill_lines(name, [page(r) for r in rows], counts, 80)
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert any(line.startswith("dws_customer_lifetime_value") and "…  " in line for line in lines)
    assert "    upstream t/2026-07-02 failed" in lines  # ids relative to the backfill, in errors too
    assert any(line.startswith("    BinderException: ") and line.endswith("… see logs") for line in lines)
    assert any(line.startswith("cut errors: `backfill logs q3_reload_of_every") for line in lines)
    days = by_date_lines(name, [DateCount(name, r.ds, r.status, 1, r.started_at, r.ended_at) for r in rows], counts, 80)
    assert max(len(line) for line in days) <= 80, "\n".join(days)
    assert [line.split()[:2] for line in days[-3:]] == [
        ["ds", "status"], ["2026-07-01T05", "success"], ["2026-07-02", "failed"]]
    assert days[-1].endswith("  2  1 blocked, 1 failed")
    wide = backfill_lines(name, [page(r) for r in rows], counts, 400)  # a wide terminal: nothing cut
    assert not any("…" in line for line in wide) and all(len(line) <= 400 for line in wide)


def test_partition_ranges() -> None:
    assert ranges_of(["2026-07-03", "2026-07-01", "2026-07-02", "2026-07-05"], False) == [
        ["2026-07-01", "2026-07-03"], ["2026-07-05", "2026-07-05"]]
    assert ranges_of(["2026-07-01T23", "2026-07-02T00", "2026-07-02T02"], True) == [
        ["2026-07-01T23", "2026-07-02T00"], ["2026-07-02T02", "2026-07-02T02"]]
    assert expand("2026-07-01T22", "2026-07-02T01") == ["2026-07-01T22", "2026-07-01T23", "2026-07-02T00",
                                                        "2026-07-02T01"]
    assert expand("2026-02-27", "2026-03-01") == ["2026-02-27", "2026-02-28", "2026-03-01"]


def test_released_leaves_what_a_failure_still_blocks() -> None:
    """Group 1: day 0 a paused, b blocked by a; day 1 blocked. Group 2: day 0 c failed, day 1 blocked."""
    a = row("bf", "a", "2026-07-01", status="paused", mode="skip")
    b = row("bf", "b", "2026-07-01", status="blocked", upstream=(a.id,))
    a2 = row("bf", "a", "2026-07-02", status="blocked", position=1, mode="skip")
    b2 = row("bf", "b", "2026-07-02", status="blocked", position=1, upstream=(a2.id,))
    c = row("bf", "c", "2026-07-03", status="failed", group=2)
    c2 = row("bf", "c", "2026-07-04", status="blocked", group=2, position=1)
    rows = [a, b, a2, b2, c, c2]
    assert set(released(rows, [a.id], run_roots=True)) == {a.id, b.id, a2.id, b2.id}
    assert released(rows, [a.id], run_roots=False) == []  # a did not succeed: nothing behind it may run
    ok = [replace(a, status="success"), *rows[1:]]
    assert set(released(ok, [a.id], run_roots=False)) == {b.id, a2.id, b2.id}
    # b also reads c (failed, not released): b and what follows b stay blocked
    mixed = [a, replace(b, upstream=(a.id, c.id)), a2, b2, c, c2]
    assert released(mixed, [a.id], run_roots=True) == [a.id]
    # an upstream of another backfill: released only when it succeeded
    other = [a, replace(b, upstream=(a.id, "other/x/2026-07-01")), a2, b2, c, c2]
    assert set(released(other, [a.id], run_roots=True, outside={"other/x/2026-07-01": "success"})) == {
        a.id, b.id, a2.id, b2.id}
    assert released(other, [a.id], run_roots=True, outside={"other/x/2026-07-01": "failed"}) == [a.id]
