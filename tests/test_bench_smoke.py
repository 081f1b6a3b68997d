"""The benchmarks run at tiny sizes and print their tables. Behaviour only: no timing is asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _env() -> dict[str, str]:
    """The scripts make their own PREFECT_HOME; no Prefect server of this test session is reused."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["DO_NOT_TRACK"] = "1"
    return env


def _run(script: str, *args: str, timeout: float) -> str:
    # the timeout only guards against a hang; nothing about speed is asserted
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _row(out: str, label: str) -> list[str]:
    line = next((ln for ln in out.splitlines() if ln.startswith(label)), None)
    assert line is not None, f"no row '{label}' in:\n{out}"
    return line[len(label):].split()


def test_plan_scale_prints_its_table_at_a_tiny_size() -> None:
    out = _run("plan_scale.py", "--days", "20", "--tables", "3", "--repeat", "1", timeout=300)
    assert "plan_scale: 3 tables x 20 days" in out
    header = next(ln for ln in out.splitlines() if ln.startswith("step"))
    assert header.split()[:6] == ["step", "instances", "wall_s", "peak_mb_rss", "x_baseline", "result"]
    for label in ("baseline jinja2 render", "validate_project (min)", "validate_project (median)",
                  "cli plan --format json"):
        cells = _row(out, label)
        assert cells[0] == "60", (label, cells)  # 3 tables x 20 days
        float(cells[1])
    assert re.search(r"validate_project \(min\).*\b(PASS|FAIL)\b", out)
    assert "exit 0" in out  # the CLI subprocess planned the same project
    shapes = re.search(r"shapes checked:\s+(\d+) distinct \(table, shape\) for (\d+) instances", out)
    assert shapes, out
    assert 3 <= int(shapes.group(1)) < int(shapes.group(2)) == 60  # one check per shape, not per instance
    for key in ("tracemalloc peak:", "rss:", "per instance:", "runs (s):"):
        assert key in out


def test_execute_overhead_prints_its_table_at_a_tiny_size() -> None:
    # reuses nothing: a fresh project, ledger, warehouse and temporary Prefect server per apply
    out = _run("execute_overhead.py", "--instances", "20", "--repeat", "2", timeout=600)
    assert "execute_overhead: 20 instances" in out
    assert "prefect: embedded: each apply starts its temporary server in the background" in out
    header = next(ln for ln in out.splitlines() if ln.startswith("path"))
    assert header.split()[:6] == ["path", "instances", "wall_s", "ms_per_instance", "x_baseline", "result"]
    for label in ("baseline thread pool (4)", "  + a marker row per write", "engine.write_partition pool (4)",
                  "apply_project (real path)", "  of which execution"):
        cells = _row(out, label)
        assert cells[0] == "20", (label, cells)
        float(cells[1])
    assert re.search(r"apply_project \(real path\).*\b(PASS|FAIL)\b", out)
    assert "apply outcome:           success 20; 20 rows in t" in out
    assert "planning alone:" in out and "build_plans for 20 instances" in out
    assert "breakdown of apply:" in out and "inside execution:" in out
    two = r"[0-9.]+, [0-9.]+"
    assert re.search(rf"runs \(s\): +baseline {two}; \+ marker {two}; engine {two}; apply {two} \(median", out)
    assert re.search(r"apply over engine alone: [0-9.]+x .*the marker row alone costs the plain pool [0-9.]+x", out)
    assert re.search(r"round by round: +apply / baseline of the same round: median [0-9.]+x, [0-9.]+-[0-9.]+x", out)


def test_apply_scale_applies_both_sizes_and_prints_the_ratio() -> None:
    out = _run("apply_scale.py", "--small", "3", "--large", "6", "--tables", "3", timeout=600)
    assert "apply_scale: 3 tables, groups 4" in out
    header = next(ln for ln in out.splitlines() if ln.startswith("project"))
    assert header.split() == ["project", "instances", "wall_s", "ms_per_instance", "outcome"]
    for days, instances in (("3", "9"), ("6", "18")):
        cells = _row(out, f"{days} days")
        assert cells[0] == instances and cells[3:] == ["success", instances], cells
        float(cells[1]), float(cells[2])
    assert re.search(r"per instance, large / small: [0-9.]+x \(goal <= 1.15x.*\) (PASS|FAIL)", out)
    bad = subprocess.run([sys.executable, str(BENCH / "apply_scale.py"), "--small", "6", "--large", "3"],
                         capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120, check=False)
    assert bad.returncode == 2 and "--small must be at least 1 and less than --large" in bad.stderr


def test_instructions_runs_each_step_it_counts_and_refuses_bad_sizes() -> None:
    # what valgrind counts, run here without it (under valgrind each step takes a minute or more)
    for step in ("baseline", "marker", "engine", "apply"):
        _run("instructions.py", "--one", step, "--instances", "4", timeout=300)
    proc = subprocess.run([sys.executable, str(BENCH / "instructions.py"), "--small", "5", "--large", "3"],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 2
    assert "--small and --large must satisfy 1 <= small < large" in proc.stderr
