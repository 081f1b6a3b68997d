"""bench/peers.py generates three equivalent projects; ours validates and plans in batches. The peer
tools themselves are not installed or run here (`make bench-peers` does that)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from steering import cli

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("ods_product", "ods_customer", "ods_order", "dim_products", "dim_customer", "fct_order_buy_di", "dws_all")


def test_peer_projects_generate_and_ours_plans_one_batch_per_table(tmp_path: Path) -> None:
    out = tmp_path / "projects"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--days", "5", "--generate-only",
                           str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for t in TABLES:
        model = (out / "sqlmesh" / "models" / f"{t}.sql").read_text()
        assert f"name bench.{t}," in model and "INCREMENTAL_BY_TIME_RANGE (time_column ds)" in model
        assert "incremental_strategy='microbatch'" in (out / "dbt" / "models" / f"{t}.sql").read_text()
    plan = cli(out / "backfill", "plan", "--format", "json")
    assert plan.exit_code == 0, plan.output
    doc = json.loads(plan.output)
    batches = {i["batch"] for b in doc["backfills"] for i in b["instances"]}
    assert len(batches) == 7 and sum(len(b["instances"]) for b in doc["backfills"]) == 35
    assert {r["mode"] for b in doc["backfills"] for r in b["runs"].values()} == {"range"}
