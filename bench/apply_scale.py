"""Applying at scale: the cost per instance of a real apply stays flat as the backfill grows longer.

Builds plan_scale.py's synthetic project twice, at --small and --large days. Each of its tables reads
the previous one and the one before it, so every date is a diamond, and the backfill runs in 4
groups. Each project is applied with `backfill.run.apply.apply_project`, the real path: validate,
ledger, scheduler, engine with real DuckDB writes, and the reporter. The bench prints the seconds and
ms per instance of both, then the ratio of the large run's ms per instance to the small run's. A cost
that grows with the length of a group shows as a ratio above 1 (before the fix of this round: 1.42
at 1,000 -> 10,000 instances).

Usage: python bench/apply_scale.py [--small 100] [--large 1000] [--tables 10] [--strict]
The goal is a ratio of at most 1.15. The exit status is 0 unless --strict is given and the goal is
missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# importing plan_scale (beside this script) gives this process its own PREFECT_HOME, turns Prefect's
# analytics off and puts the project on sys.path, before backfill is imported
from plan_scale import build_project
from quiet import wait_for_quiet

GOAL_RATIO = 1.15


def apply_once(work: Path, tables: int, days: int) -> tuple[float, int, str]:
    """(wall s, instances, outcome counts) of one apply of a fresh project of `days` days."""
    from backfill.run.apply import apply_project

    root = work / f"days-{days}"
    build_project(root, tables, days)
    started = time.perf_counter()
    report = apply_project(root, say=lambda m: None)
    wall = time.perf_counter() - started
    counts: dict[str, int] = {}
    for b in report.backfills:
        for status, n in b.counts.items():
            counts[status] = counts.get(status, 0) + n
    if not report.ok:
        raise SystemExit(f"apply failed: {counts}")
    wait_for_quiet(work)  # the temporary server records the run after the apply returned: untimed
    return wall, sum(counts.values()), ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100, help="days of the small project")
    ap.add_argument("--large", type=int, default=1000, help="days of the large project")
    ap.add_argument("--tables", type=int, default=10)
    ap.add_argument("--strict", action="store_true", help="exit 1 when the ratio misses the goal")
    args = ap.parse_args(argv)
    if not 1 <= args.small < args.large:
        ap.error("--small must be at least 1 and less than --large")
    with tempfile.TemporaryDirectory(prefix="bench-apply-scale-") as tmp:
        runs = [(days, *apply_once(Path(tmp), args.tables, days)) for days in (args.small, args.large)]
    print(f"apply_scale: {args.tables} tables, groups 4, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpu(s), load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{'project':<22}{'instances':>10}{'wall_s':>9}{'ms_per_instance':>17}  outcome")
    print("-" * 72)
    per = []
    for days, wall, n, counts in runs:
        per.append(wall / n * 1000)
        print(f"{f'{days} days':<22}{n:>10}{wall:>9.2f}{per[-1]:>17.2f}  {counts}")
    ratio = per[1] / per[0]
    verdict = "PASS" if ratio <= GOAL_RATIO else "FAIL"
    print(f"\nper instance, large / small: {ratio:.2f}x (goal <= {GOAL_RATIO}x: flat as the backfill grows) {verdict}")
    return 1 if args.strict and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
