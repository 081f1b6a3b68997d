"""`backfill status` at scale: 100 tables x 3 years of recorded partitions (~110,000 ledger rows).

Builds in a temporary folder a project of 100 table specs (a binary tree of tables, each reading
its parent) and 10 backfill specs (some with `scope: downstream`) twice: once with every table
declaring `depends_on`, once with half of them inferring it from their SQL; and a
SQLite ledger holding one whole-table row per table and day over 3 years, inserted directly through
`backfill.state.ledger.Ledger` (98 % current, 1.5 % written by an older template, 0.5 % never written).
Then times, in this process, `backfill status --json` and the text heat map (CliRunner), and once
`backfill status --json` as a subprocess (imports included).

Usage: python bench/status_scale.py [--tables 100] [--years 3] [--repeat 5] [--no-cli]
Prints seconds; no assertion (tests/test_status.py checks the behaviour).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

START = date(2023, 1, 1)

SQL_ROOT = """\
SELECT CAST(n AS BIGINT) AS customer_id, CAST(n * 1.5 AS DECIMAL(18, 2)) AS amount
FROM (SELECT UNNEST(RANGE(10)) AS n) AS s
WHERE DATE '{{ ds }}' IS NOT NULL
"""
SQL_CHILD = """\
SELECT a.customer_id, CAST(SUM(a.amount) AS DECIMAL(18, 2)) AS amount
FROM {{ ref('%s') }} AS a
WHERE a.ds = DATE '{{ ds }}'
GROUP BY a.customer_id
"""


def build(root: Path, n_tables: int, days: int, infer: bool) -> dict[str, int]:
    (root / "tables").mkdir(parents=True)
    (root / "sql").mkdir()
    (root / "backfills").mkdir()
    (root / "project.yaml").write_text(
        "name: status_scale\ndialect: duckdb\nengine: {type: duckdb, path: .backfill/warehouse.duckdb}\n"
        "state: .backfill/state.db\nmax_parallel: 4\n")
    names = [f"t{i:03d}" for i in range(n_tables)]
    for i, name in enumerate(names):
        parent = names[(i - 1) // 2] if i else None  # a binary tree: every table reads its parent
        kind = "integration" if parent is None else "aggregate"
        (root / "sql" / f"{name}.sql").write_text(SQL_CHILD % parent if parent else SQL_ROOT)
        depends = f"depends_on: [{parent}]\n" if parent and (i % 2 == 0 or not infer) else ""
        (root / "tables" / f"{name}.yaml").write_text(
            f"name: {name}\nkind: {kind}\ngranularity: day\npartition: ds\nprimary_key: [customer_id]\n"
            "fields:\n  - {name: customer_id, type: BIGINT}\n  - {name: amount, type: \"DECIMAL(18,2)\"}\n"
            f"sql: ../sql/{name}.sql\n{depends}")
    end = START + timedelta(days=days - 1)
    for b in range(10):
        targets = names[b * (n_tables // 10):(b + 1) * (n_tables // 10)]
        scope = "downstream" if b % 3 == 0 else "current"
        (root / "backfills" / f"b{b:02d}.yaml").write_text(
            f"name: b{b:02d}\ntargets:\n" + "".join(f"  - table: {t}\n" for t in targets)
            + f"scope: {scope}\ndata_timestamp: {{start: {START.isoformat()}, end: {end.isoformat()}}}\n")

    from backfill.spec.loader import load_project
    from backfill.state.fingerprints import template_fingerprint
    from backfill.state.ledger import Ledger
    from backfill.state.schema import T_PARTITIONS

    project = load_project(root)
    (root / ".backfill").mkdir()
    ledger = Ledger.open(f"sqlite:///{root / '.backfill' / 'state.db'}")
    counts = {"current": 0, "stale": 0, "missing": 0}
    rows = []
    for ti, name in enumerate(names):
        tfp = template_fingerprint(project.tables[name], project)
        for d in range(days):
            ds = (START + timedelta(days=d)).isoformat()
            k = (ti * 7919 + d * 104729) % 1000
            if k < 5:
                counts["missing"] += 1
                continue
            state = "stale" if k < 20 else "current"
            counts[state] += 1
            rows.append({"table_name": name, "ds": ds, "field": "*", "fingerprint": f"{k:016x}",
                         "instance_id": f"b/{name}/{ds}", "written_at": 0.0,
                         "template_fingerprint": "0ld0ld0ld0ld0ld0" if state == "stale" else tfp})
    try:
        with ledger.engine.begin() as conn:
            conn.execute(T_PARTITIONS.insert(), rows)
    finally:
        ledger.close()
    return counts


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a busy machine CPU time is the steadier figure."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(root: Path, expected: dict[str, int], repeat: int, cli: bool) -> None:
    from typer.testing import CliRunner

    from backfill.cli.main import _register_optional, app

    _register_optional()
    runner = CliRunner()
    out: list[str] = []

    def run(*extra: str) -> None:
        result = runner.invoke(app, ["status", "--project", str(root), *extra])
        if result.exit_code != 0:
            raise SystemExit(f"status failed: {result.output[-2000:]}")
        out[:] = [result.stdout]

    def report(label: str, *extra: str) -> None:
        runs = [timed(lambda: run(*extra)) for _ in range(repeat)]
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        print(f"  {label:<34} wall median {statistics.median(wall):.3f}s (min {min(wall):.3f}s), "
              f"CPU median {statistics.median(cpu):.3f}s")

    wall, cpu = timed(lambda: run("--json"))
    doc = json.loads(out[0])
    got = {s: sum(t[s] for t in doc["tables"]) for s in ("current", "stale", "missing")}
    print(f"  status --json, first call (imports)  wall {wall:.3f}s, CPU {cpu:.3f}s; counts {got} "
          f"({'as built' if got == expected else 'DIFFER from ' + str(expected)})")
    report("status --json (in-process)", "--json")
    report("status heat map (in-process)")
    report("status t050 --json (one table)", "t050", "--json")
    if cli:
        exe = Path(sys.executable).parent / "backfill"
        wall, _ = timed(lambda: subprocess.run([str(exe), "status", "--json", "--project", str(root)], check=True,
                                               stdout=subprocess.DEVNULL))
        print(f"  `backfill status --json` subprocess   wall {wall:.3f}s (interpreter start and imports included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=int, default=100)
    ap.add_argument("--years", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-cli", action="store_true", help="skip the subprocess measurement")
    args = ap.parse_args()
    days = 365 * args.years
    calibration = min(timeit.repeat("sum(range(10**6))", number=1, repeat=5))
    print(f"calibration: sum(range(10**6)) takes {calibration * 1000:.0f} ms here "
          "(~15-20 ms on a current laptop; scale the figures below accordingly)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-status-"))
    try:
        for infer in (False, True):
            root = tmp / ("infer" if infer else "declared")
            t0 = time.perf_counter()
            expected = build(root, args.tables, days, infer)
            how = ("half the tables infer depends_on (each such template rendered once)" if infer
                   else "every table declares depends_on (no rendering at all)")
            print(f"{args.tables} tables x {days} days, {how}: {sum(expected.values())} partitions, "
                  f"{expected['current'] + expected['stale']} ledger rows (built in {time.perf_counter() - t0:.1f}s)")
            measure(root, expected, args.repeat, not args.no_cli)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
