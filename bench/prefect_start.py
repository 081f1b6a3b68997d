"""Prefect's share of a tutorial apply: embedded default (temporary server) and a standing server.

The applying process never imports Prefect: a reporter process records the run in Prefect while the
instances execute, and the apply waits for it only at the end (backfill/run/reporting.py). Each run is
a fresh process applying the retail tutorial (`backfill init`):

- embedded, new machine: a fresh project and an empty user cache (the temporary server migrates
  Prefect's database, 7-10 s of CPU, and the migrated copy is cached);
- embedded, new project: a fresh project, the migrated copy cached;
- embedded, again: the same project after deleting the warehouse and the ledger;
- standing 1 / 2: against `prefect server start`, fresh project, then again.

Printed per run: the wall time of the apply in that process (imports included), the time the groups
spent executing instances, and Prefect's share = the time the apply waited for the reporter after its
own work (what Prefect costs the user on top of the backfill).

Goals: embedded on a new project within 5 s; Prefect's share within 2 s against a standing server.
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
from typing import Any

_CHILD = r"""
import json, sys, threading, time
t0 = time.perf_counter()
from pathlib import Path
import backfill.run.scheduler as scheduler
import backfill.run.apply as apply

spans, waits, lock = [], [], threading.Lock()
real_close, real_run_group = apply.close_reporter, scheduler.BackfillRun.run_group

def run_group(self, group):
    start = time.perf_counter()
    try:
        return real_run_group(self, group)
    finally:
        with lock:
            spans.append((id(self), start, time.perf_counter()))

def close_reporter(*args, **kwargs):
    start = time.perf_counter()
    try:
        return real_close(*args, **kwargs)
    finally:
        waits.append(time.perf_counter() - start)

scheduler.BackfillRun.run_group = run_group
apply.close_reporter = close_reporter
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
print(json.dumps({"wall": wall, "waited": sum(waits), "work": work, "counts": counts,
                  "prefect_imported": "prefect" in sys.modules}))
"""


def _child(project: Path, env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, str(project)], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"apply failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
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
        runs = [("embedded, new machine", "embedded-1", True, False),
                ("embedded, new project", "embedded-2", False, False),
                ("embedded, again", "embedded-2", False, True),
                ("standing 1", "standing", False, False), ("standing 2", "standing", False, True)]
        for label, folder, empty_cache, again in runs:
            project = work / folder
            if not again:
                shutil.copytree(root / "specs", project, ignore=shutil.ignore_patterns(".backfill", "data"))
                generate_source_data(project)
            else:
                _fresh_state(project)
            run_env = dict(env, XDG_CACHE_HOME=str(work / ("cache-empty" if empty_cache else "cache")))
            if empty_cache:
                shutil.rmtree(work / "cache-empty", ignore_errors=True)
            elif not (work / "cache").exists():  # the machine's migrated copy, made by a first apply
                deadline = time.monotonic() + 180  # by its temporary server, once it booted
                while not list((work / "cache-empty").glob("backfill/*.db")) and time.monotonic() < deadline:
                    time.sleep(0.2)
                shutil.copytree(work / "cache-empty", work / "cache")
            if label.startswith("standing"):
                if server is None:
                    server, url = _standing_server(work / "server-home", env)
                run_env["PREFECT_API_URL"] = url
            r = _child(project, run_env)
            assert set(r["counts"]) == {"success"}, r["counts"]
            assert not r["prefect_imported"], "the applying process imported Prefect"
            rows.append((label, r))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    instances = rows[0][1]["counts"]["success"]
    print(f"prefect_start: tutorial apply, {instances} instances; load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':<24} {'wall_s':>7} {'process_s':>9} {'instances_s':>11} {'prefect_s':>9}  goal")
    for label, r in rows:
        goal = ""
        if label == "embedded, new project":
            goal = f"wall <= 5 s: {'PASS' if r['wall'] <= 5 else 'FAIL'}"
        if label == "standing 2":
            goal = f"prefect <= 2 s: {'PASS' if r['waited'] <= 2 else 'FAIL'}"
        print(f"{label:<24} {r['wall']:>7.2f} {r['process']:>9.2f} {r['work']:>11.2f} {r['waited']:>9.2f}  {goal}")


if __name__ == "__main__":
    main()
