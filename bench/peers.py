"""backfill next to SQLMesh and dbt-duckdb on the same backfill: the retail tutorial's 7 tables over
365 days (2,555 partitions), cold, no-op and one-template-change runs, in the same run.

The three projects are generated from one set of range queries (bench/peer_projects.py). SQLMesh
and dbt are installed into their own virtual environments under `.peers/` (ignored by git) the
first time; every run is a fresh process on a fresh copy of its project, timed by wall clock. The
cold, no-op and change runs of a project follow each other at once; before the next project, the
bench waits (untimed) until nothing works under the last one any more (our temporary Prefect server
records a run after its apply returned).
After the runs the final tables of every variant are compared row by row (all 7 tables).

Usage: python bench/peers.py [--days 365] [--repeat N] [--only NAME ...] [--keep] [--strict]
By default each variant runs 5 times (3 for ours per partition, once for the peers' per-day runs of a
minute or more): the goals compare medians, and one cold run of 2 s varies by 15% here.
Exit status 0 unless --strict and a goal is missed (or the tables differ).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import peer_projects as pp  # noqa: E402
from quiet import wait_for_quiet  # noqa: E402

PEERS = ROOT / ".peers"
PYTHON = ROOT / ".venv" / "bin" / "python"
REQUIREMENTS = {"sqlmesh": ["sqlmesh", "duckdb<2"], "dbt": ["dbt-core>=1.11,<1.12", "dbt-duckdb"]}
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
         "SQLMESH_DISABLE_ANONYMIZED_ANALYTICS": "1"}
LAST = date(2026, 11, 30)


@dataclass
class Variant:
    name: str  # what the table shows
    make: Callable[[Path], Path]  # builds a fresh project under the given folder
    commands: Callable[[Path], dict[str, list[str]]]  # cold / noop / change -> argv
    warehouse: Callable[[Path], tuple[Path, str, Path]]  # (DuckDB file, schema, python that reads it)
    env: dict[str, str] = field(default_factory=dict)
    runs: int = 5  # fresh cold runs by default (the median is reported): 1 for a run of a minute or more
    times: dict[str, list[float]] = field(default_factory=dict)
    final: Path | None = None


def ensure_venv(name: str) -> Path:
    """The tool's own virtual environment, installed once from the package index."""
    venv = PEERS / name
    if (venv / ".installed").exists():
        return venv
    PEERS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:  # first that the packages resolve at all
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        *REQUIREMENTS[name]], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *REQUIREMENTS[name]], check=True)
    (venv / ".installed").touch()
    return venv


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env={**os.environ, **QUIET, **env}, capture_output=True, text=True)
    took = time.monotonic() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise SystemExit(f"{' '.join(argv[:3])} failed in {cwd} (exit {done.returncode}):\n{tail}")
    return took


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **QUIET, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the Prefect server did not start")


DUMP = """
import duckdb, json, sys
path, schema, first, last, tables = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
con = duckdb.connect(path, read_only=True)
out = {}
for table, cols in tables.items():
    q = f'SELECT {", ".join(cols)} FROM {schema}.{table} WHERE ds BETWEEN DATE \\'{first}\\' AND DATE \\'{last}\\''
    out[table] = sorted([str(v) for v in row] for row in con.execute(q).fetchall())
print(json.dumps(out))
"""


def dump(variant: Variant, first: date, last: date) -> dict[str, list[list[str]]]:
    import yaml

    assert variant.final is not None
    path, schema, python = variant.warehouse(variant.final)
    cols = {t: [f["name"] for f in yaml.safe_load((ROOT / "specs" / "tables" / f"{t}.yaml").read_text())["fields"]]
            + ["ds"] for t in pp.TABLES}
    done = subprocess.run([str(python), "-c", DUMP, str(path), schema, str(first), str(last), json.dumps(cols)],
                          capture_output=True, text=True, check=True)
    loaded: dict[str, list[list[str]]] = json.loads(done.stdout)
    return loaded


def variants(work: Path, data: Path, first: date, last: date, server: str) -> list[Variant]:
    sqlmesh, dbt = PEERS / "sqlmesh" / "bin", PEERS / "dbt" / "bin"
    steps = ("cold", "noop", "change")
    ours_cmd = {k: [str(ROOT / ".venv" / "bin" / "backfill"), "apply", "--yes"] for k in steps}
    mesh_cmd = {k: [str(sqlmesh / "sqlmesh"), "plan", "--auto-apply", "--no-prompts"] for k in steps}
    window = ["--event-time-start", str(first), "--event-time-end", str(last + timedelta(days=1))]
    dbt_run = [str(dbt / "dbt"), "run", "--profiles-dir", "."]
    dbt_cmd = {"cold": [*dbt_run, *window], "noop": dbt_run, "change": [*dbt_run, "-s", "dws_all", *window]}

    def ours_wh(p: Path) -> tuple[Path, str, Path]:
        return p / ".backfill" / "warehouse.duckdb", "main", PYTHON

    home = str(work / "prefect-home")  # the embedded runs share one Prefect home, as a user's machine does

    def ours(batch: int, groups: int) -> Callable[[Path], Path]:
        return lambda p: pp.make_backfill(p, data, first, last, batch, groups)

    out = [
        Variant("backfill per partition (groups 3), embedded", ours(1, 3), lambda p: ours_cmd, ours_wh,
                {"PREFECT_HOME": home}, runs=3),
        Variant("backfill batched (groups 1), embedded", ours(366, 1), lambda p: ours_cmd, ours_wh,
                {"PREFECT_HOME": home}),
        Variant("backfill batched (groups 1), standing Prefect server", ours(366, 1), lambda p: ours_cmd,
                ours_wh, {"PREFECT_API_URL": server}),
        Variant("backfill batched (groups 3), standing Prefect server", ours(366, 3), lambda p: ours_cmd,
                ours_wh, {"PREFECT_API_URL": server}),
        Variant("SQLMesh, default batching", lambda p: pp.make_sqlmesh(p, data, first, last, False),
                lambda p: mesh_cmd, lambda p: (p / "warehouse.duckdb", "bench", sqlmesh / "python")),
        Variant("SQLMesh, batch_size 1", lambda p: pp.make_sqlmesh(p, data, first, last, True),
                lambda p: mesh_cmd, lambda p: (p / "warehouse.duckdb", "bench", sqlmesh / "python"), runs=1),
        Variant("dbt-duckdb microbatch, batch_size year", lambda p: pp.make_dbt(p, data, first, "year"),
                lambda p: dbt_cmd, lambda p: (p / "warehouse.duckdb", "main", dbt / "python")),
        Variant("dbt-duckdb microbatch, batch_size day", lambda p: pp.make_dbt(p, data, first, "day"),
                lambda p: dbt_cmd, lambda p: (p / "warehouse.duckdb", "main", dbt / "python"), runs=1),
    ]
    for v in out:
        if "PREFECT_API_URL" not in v.env:
            v.env.setdefault("PREFECT_API_URL", "")
    return out


def measure(v: Variant, work: Path, repeat: int | None, index: int) -> None:
    for n in range(repeat or v.runs):
        folder = work / f"variant{index}-run{n}"
        project = v.make(folder)
        commands = v.commands(project)
        env = {k: val for k, val in v.env.items() if val}
        drop = [k for k, val in v.env.items() if not val]
        clean = {k: val for k, val in os.environ.items() if k not in drop}
        with _environ(clean):
            v.times.setdefault("cold", []).append(run(commands["cold"], project, env))
            v.times.setdefault("noop", []).append(run(commands["noop"], project, env))
            sql = project / ("sql" if (project / "sql").exists() else "models") / "dws_all.sql"
            pp.change_template(sql)
            v.times.setdefault("change", []).append(run(commands["change"], project, env))
        v.final = project
        wait_for_quiet(folder)
        print(f"  {v.name}: cold {v.times['cold'][-1]:.1f}s, no-op {v.times['noop'][-1]:.1f}s, "
              f"change {v.times['change'][-1]:.1f}s", flush=True)


class _environ:
    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.saved = env, dict(os.environ)

    def __enter__(self) -> None:
        os.environ.clear()
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        os.environ.clear()
        os.environ.update(self.saved)


def report(vs: list[Variant], identical: bool) -> bool:
    med = {v.name: {k: statistics.median(t) for k, t in v.times.items()} for v in vs}
    print(f"\n{'variant':<56} {'cold s':>8} {'no-op s':>8} {'change s':>9}")
    for v in vs:
        m = med[v.name]
        print(f"{v.name:<56} {m['cold']:>8.2f} {m['noop']:>8.2f} {m['change']:>9.2f}")
    goals = [
        ("backfill batched (groups 1), embedded", "SQLMesh, default batching", 1.5, "<="),
        ("backfill batched (groups 1), standing Prefect server", "SQLMesh, default batching", 1.0, "<="),
        ("SQLMesh, batch_size 1", "backfill per partition (groups 3), embedded", 5.0, ">="),
    ]
    ok = identical
    print("\ngoals (cold wall time, medians):")
    for ours, peer, bound, how in goals:
        if ours not in med or peer not in med:
            continue
        ratio = med[ours]["cold"] / med[peer]["cold"]
        met = ratio <= bound if how == "<=" else ratio >= bound
        ok &= met
        print(f"  {ours} / {peer}: {ratio:.2f}x (goal {how} {bound}x) {'PASS' if met else 'FAIL'}")
    print(f"final tables identical across all variants (7 tables): {'yes' if identical else 'NO'}")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, help="fresh cold runs per variant (median reported); default: 5, "
                    "3 for ours per partition, 1 for the peers' per-day runs (a minute or more each)")
    ap.add_argument("--only", nargs="*", help="variants whose name contains one of these words")
    ap.add_argument("--generate-only", type=Path, help="write the three projects under this folder and stop")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    first = LAST - timedelta(days=args.days - 1)
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    data = pp.make_data(work / "source", first, LAST)
    if args.generate_only:
        pp.make_backfill(args.generate_only / "backfill", data, first, LAST, 366, 1)
        pp.make_sqlmesh(args.generate_only / "sqlmesh", data, first, LAST, False)
        pp.make_dbt(args.generate_only / "dbt", data, first, "year")
        print(f"projects written under {args.generate_only}")
        return 0
    for name in REQUIREMENTS:
        ensure_venv(name)
    from backfill.run.tempserver import template_path

    cached = template_path().is_file()
    server_proc, url = start_prefect_server(work / "prefect-server-home")
    try:
        print(f"{args.days} days {first}..{LAST}, 7 tables, {7 * args.days} partitions; work in {work}", flush=True)
        vs = variants(work, data, first, LAST, url)
        if args.only:
            vs = [v for v in vs if any(w.lower() in v.name.lower() for w in args.only)]
        for i, v in enumerate(vs):
            measure(v, work, args.repeat, i)
        dumps = [dump(v, first, LAST) for v in vs]
        identical = all(d == dumps[0] for d in dumps[1:]) and bool(dumps) and bool(dumps[0]["dws_all"])
        ok = report(vs, identical)
        print(f"Prefect's migrated empty database cached before this run ({template_path()}): "
              f"{'yes' if cached else 'no: the first embedded run migrated it'}")
    finally:
        server_proc.terminate()
        server_proc.wait(30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
