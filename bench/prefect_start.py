"""Prefect's share of a tutorial apply: embedded default (temporary server) and a standing server.

For each mode the retail tutorial (`backfill init`) is applied twice in a fresh process each time:
run 1 on a fresh project, run 2 after deleting the warehouse and the ledger (so the same
instances run again; Prefect's database under .backfill/prefect/ is kept, as on any later apply).
Printed per run: the wall time of the whole apply in that process (imports included), the time inside
the Prefect flow calls (`run_flow`), the time the groups spent executing instances, and Prefect's
share = flow calls minus instance execution (waiting for the server, importing Prefect, flow and task
run bookkeeping, artifacts).

Goals: embedded second run within 5 s; Prefect's share within 2 s against a standing server.
Usage: python bench/prefect_start.py
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

_CHILD = r"""
import json, sys, threading, time
t0 = time.perf_counter()
from pathlib import Path
import backfill.run.flow as flow
import backfill.run.scheduler as scheduler

spans, flows, lock = [], [], threading.Lock()
real_run_flow, real_run_group = flow.run_flow, scheduler.BackfillRun.run_group

def run_group(self, group):
    start = time.perf_counter()
    try:
        return real_run_group(self, group)
    finally:
        with lock:
            spans.append((id(self), start, time.perf_counter()))

def run_flow(*args, **kwargs):
    start = time.perf_counter()
    try:
        return real_run_flow(*args, **kwargs)
    finally:
        flows.append(time.perf_counter() - start)

scheduler.BackfillRun.run_group = run_group
import backfill.run.apply as apply
flow.run_flow = run_flow
report = apply.apply_project(Path(sys.argv[1]), say=lambda m: None)
wall = time.perf_counter() - t0
work = 0.0
for run in {s[0] for s in spans}:
    mine = [s for s in spans if s[0] == run]
    work += max(s[2] for s in mine) - min(s[1] for s in mine)
counts = {}
for b in report.backfills:
    for k, v in b.counts.items():
        counts[k] = counts.get(k, 0) + v
print(json.dumps({"wall": wall, "flows": sum(flows), "work": work, "counts": counts}))
"""


def _child(project: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, str(project)], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"apply failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - started
    return result


def _fresh_state(project: Path) -> None:
    for name in ("state.db", "state.db-wal", "state.db-shm", "warehouse.duckdb", "warehouse.duckdb.wal"):
        (project / ".backfill" / name).unlink(missing_ok=True)


def _standing_server(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env={**env, "PREFECT_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("prefect server start did not answer")


def main() -> None:
    from backfill.spec.tutorial import generate_source_data

    root = Path(__file__).resolve().parent.parent
    work = Path(tempfile.mkdtemp(prefix="bench-prefect-start-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.update(PREFECT_HOME=str(work / "client-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    rows = []
    server = None
    try:
        for mode in ("embedded", "standing"):
            project = work / mode
            shutil.copytree(root / "specs", project, ignore=shutil.ignore_patterns(".backfill", "data"))
            generate_source_data(project)
            run_env = dict(env)
            if mode == "standing":
                server, url = _standing_server(work / "server-home", env)
                run_env["PREFECT_API_URL"] = url
            for n in (1, 2):
                if n == 2:
                    _fresh_state(project)
                r = _child(project, run_env)
                assert set(r["counts"]) == {"success"}, r["counts"]
                rows.append((mode, n, r))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    instances = rows[0][2]["counts"]["success"]
    print(f"prefect_start: tutorial apply, {instances} instances; load average {os.getloadavg()[0]:.2f}")
    print(f"{'mode':<10} {'run':>3} {'wall_s':>7} {'process_s':>9} {'flows_s':>7} {'instances_s':>11} "
          f"{'prefect_s':>9}  goal")
    for mode, n, r in rows:
        share = r["flows"] - r["work"]
        goal = ""
        if n == 2 and mode == "embedded":
            goal = f"wall <= 5 s: {'PASS' if r['wall'] <= 5 else 'FAIL'}"
        if n == 2 and mode == "standing":
            goal = f"prefect <= 2 s: {'PASS' if share <= 2 else 'FAIL'}"
        print(f"{mode:<10} {n:>3} {r['wall']:>7.2f} {r['process']:>9.2f} {r['flows']:>7.2f} {r['work']:>11.2f} "
              f"{share:>9.2f}  {goal}")


if __name__ == "__main__":
    main()
