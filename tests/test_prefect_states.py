"""What the Prefect server shows of an in-process apply: honest states, instance logs, progress
and table artifacts, tags. Real DuckDB, real SQLite ledger, the session's real Prefect server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from steering import dates, edit

from backfill.run.apply import apply_project


def _poll(url: str, body: dict[str, Any], until: Any, tries: int = 100) -> list[dict[str, Any]]:
    """The server records task runs, logs and artifacts a moment after the flow run ends."""
    found: list[dict[str, Any]] = []
    for _ in range(tries):
        found = httpx.post(url, json=body).json()
        if until(found):
            break
        time.sleep(0.1)
    return found


def test_a_failing_instance_makes_the_group_and_the_flow_run_failed(tutorial: Path, prefect_api: str) -> None:
    dates(tutorial, "integration", "2026-06-26", "2026-07-02")
    dates(tutorial, "logical_tables", "2026-07-01", "2026-07-02")
    logical = tutorial / "backfills" / "logical_tables.yaml"
    edit(logical, "name: tutorial_logical", "name: honest_states")
    edit(logical, "groups: 3", "groups: 2")
    where = "WHERE o.ds = DATE '{{ ds }}'"
    edit(tutorial / "sql" / "fct_order_buy_di.sql", where,
         where + "{% if ds == '2026-07-02' %}\n    AND o.quantity // 0 >= 0{% endif %}")
    messages: list[str] = []
    report = apply_project(tutorial, say=messages.append)
    assert not report.ok
    assert any("/runs/flow-run/" in m for m in messages), "the UI link of the flow run is printed"

    flows = httpx.post(f"{prefect_api}/flow_runs/filter",
                       json={"flow_runs": {"tags": {"all_": ["backfill:honest_states"]}}}).json()
    assert len(flows) == 1
    run = flows[0]
    assert run["state_type"] == "FAILED"
    assert run["state"]["message"] == "2 of 8 instance(s) did not succeed: 1 failed, 1 blocked"
    assert "project:retail" in run["tags"]
    tasks = _poll(f"{prefect_api}/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}},
                  lambda found: len(found) == 2 and all(t["state_type"] in ("FAILED", "COMPLETED") for t in found))
    by_name = {t["name"]: t for t in tasks}
    assert by_name["honest_states group 1: 2026-07-01 (4 instances)"]["state_type"] == "COMPLETED"
    failed = by_name["honest_states group 2: 2026-07-02 (4 instances)"]
    assert failed["state_type"] == "FAILED"
    assert failed["state"]["message"].endswith("2 of 4 instance(s) did not succeed: 1 failed, 1 blocked")

    logs = _poll(f"{prefect_api}/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}},
                 lambda found: any("dws_all/2026-07-02 blocked" in lg["message"] for lg in found))
    text = "\n".join(lg["message"] for lg in logs)
    assert "honest_states/fct_order_buy_di/2026-07-01 started" in text
    assert "honest_states/fct_order_buy_di/2026-07-01 success:" in text and "row(s)" in text
    assert "honest_states/fct_order_buy_di/2026-07-02 failed: EngineError" in text
    assert "honest_states/dws_all/2026-07-02 blocked: upstream honest_states/fct_order_buy_di/2026-07-02" in text

    progress = httpx.post(f"{prefect_api}/artifacts/filter",
                          json={"artifacts": {"key": {"any_": ["honest-states-group-2-progress"]}}}).json()
    assert progress and progress[0]["type"] == "progress" and float(progress[0]["data"]) == 100.0
    table = httpx.post(f"{prefect_api}/artifacts/filter",
                       json={"artifacts": {"key": {"any_": ["honest-states-group-2"]}}}).json()
    assert table and "honest_states/dws_all/2026-07-02" in str(table[0]["data"])

