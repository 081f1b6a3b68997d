"""Execution overhead in instructions: the steps of execute_overhead.py counted by valgrind's callgrind.

Wall time on a shared 2-core machine swings by 30% between rounds; instruction counts repeat. Each
step runs in its own process under `valgrind --tool=callgrind`, once with `--small` and once with
`--large` instances; the difference divided by the difference in instances is the cost of one more
instance, with interpreter start-up, imports and project set-up cancelled out:

  baseline   the plain 4-thread pool (BEGIN; DELETE; INSERT ... SELECT; COMMIT per partition)
  marker     the same, each transaction also inserting its write marker row
  engine     DuckDBEngine.write_partition from the same pool
  apply      backfill.run.apply.apply_project (validate, plan, record, scheduler, engine, ledger,
             reporting; the temporary Prefect server it starts runs outside the count)

Threads run one at a time under valgrind, so the counts say how much work each path does, not how
well it overlaps. Usage: python bench/instructions.py [--small 100] [--large 400]
(needs valgrind; 9 minutes at --small 20 --large 120, longer at the defaults).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STEPS = ("baseline", "marker", "engine", "apply")
GOAL = 1.5


def one_step(step: str, instances: int) -> None:
    """Run one step at one size in this process (the child valgrind counts)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import execute_overhead as eo

    work = Path(tempfile.mkdtemp(prefix="bench-instr-"))
    try:
        src = work / "project"
        eo.build_project(src, instances)
        if step in ("baseline", "marker"):
            _, rows, _ = eo.baseline_in(work, 0, instances, marker=step == "marker")
        elif step == "engine":
            _, rows = eo.engine_only(src, work, instances)
        else:
            rows = int(eo.apply(src, work, "apply")["rows"])
        if rows != instances:
            raise SystemExit(f"{step} wrote {rows} rows, expected {instances}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def counted(step: str, instances: int) -> int:
    """Instructions callgrind counted for one step at one size."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as out:
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out",
             sys.executable, __file__, "--one", step, "--instances", str(instances)],
            capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"valgrind on {step} ({instances}) failed:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=400)
    ap.add_argument("--one", choices=STEPS, help=argparse.SUPPRESS)
    ap.add_argument("--instances", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        one_step(args.one, args.instances)
        return 0
    if not 1 <= args.small < args.large:
        ap.error("--small and --large must satisfy 1 <= small < large")
    if shutil.which("valgrind") is None:
        print("error: valgrind is not installed; install it (Debian: apt-get install valgrind) and run again")
        return 1
    per: dict[str, float] = {}
    for step in STEPS:
        small, large = counted(step, args.small), counted(step, args.large)
        per[step] = (large - small) / (args.large - args.small)
        print(f"  {step:9s} {per[step] / 1e6:6.2f} M instructions per instance", flush=True)
    base = per["baseline"]
    print(f"\ninstructions per instance, {args.small} -> {args.large} instances, python {sys.version.split()[0]}")
    print(f"{'path':10s} {'M/instance':>11s} {'x_baseline':>11s}")
    for step in STEPS:
        print(f"{step:10s} {per[step] / 1e6:11.2f} {per[step] / base:11.2f}")
    verdict = "PASS" if per["apply"] <= GOAL * base else "FAIL"
    print(f"apply / baseline: {per['apply'] / base:.2f}x (goal <= {GOAL}x) {verdict}; "
          f"apply / marker: {per['apply'] / per['marker']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
