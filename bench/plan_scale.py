"""Planning at scale: 10 tables x 3,650 days (36,500 instances) in <= 3 s and <= 400 MB.

Builds a synthetic project in a temporary folder, then measures, in one process:

  (a) baseline   plain jinja2 rendering of every instance's template, no checks: the floor;
  (b) validate   `backfill.plan.validate.validate_project(root)`: render + shape-checked SQL + fingerprints
                 of every instance (wall seconds, process peak RSS, tracemalloc peak in a separate pass);
  (c) shapes     how many distinct SQL shapes sqlglot checked, against the number of instances;
  (d) cli        `backfill plan --format json` in a subprocess, end to end (imports included).

Usage: python bench/plan_scale.py [--days 3650] [--tables 10] [--repeat 3] [--no-cli] [--strict]
Ratios are against the baseline measured in the same run. Exit status is 0 unless --strict and FAIL.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date, datetime, timedelta
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="bench-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_SECONDS = 3.0
GOAL_MB = 400.0
START = date(2016, 1, 1)

# ------------------------------------------------------------------------------------------ project

NAMES = ["ods_orders", "ods_customers", "dim_customer", "fct_orders", "fct_payments",
         "dws_customer_1d", "dws_customer_7d", "dws_payment_1d", "ads_customer", "ads_summary"]
KINDS = ["integration", "integration", "dimension", "fact", "fact",
         "aggregate", "aggregate", "aggregate", "aggregate", "aggregate"]
FIELDS = [("customer_id", "BIGINT"), ("region", "VARCHAR"), ("amount", "DECIMAL(18,2)"),
          ("order_cnt", "BIGINT"), ("prev_amount", "DECIMAL(18,2)")]

ROOT_SQL = """\
-- {name}: integration of the day's raw orders (generated here so the bench needs no files)
WITH ids AS (
    SELECT UNNEST(RANGE(200)) AS n
),
regions AS (
    SELECT v.k, v.region FROM (VALUES (0, 'north'), (1, 'south'), (2, 'east')) AS v(k, region)
)
SELECT
    CAST(i.n % 50 AS BIGINT) AS customer_id,
    MAX(g.region) AS region,
    CAST(SUM(i.n * 1.25) AS DECIMAL(18, 2)) AS amount,
    COUNT(*) AS order_cnt,
    CAST(SUM(CASE WHEN DATE '{{{{ ds_add(ds, -1) }}}}' < DATE '{{{{ ds }}}}' THEN 0 ELSE i.n END)
         AS DECIMAL(18, 2)) AS prev_amount
FROM ids AS i
JOIN regions AS g ON g.k = i.n % 3
GROUP BY i.n % 50
"""

# Three realistic shapes of downstream SQL, cycled over the tables. {p1}/{p2} are the two upstream
# tables (a chain plus a skip link: every table from the third on closes a diamond).
STYLES = [
    """\
-- {name}: today's {p1} against yesterday's {p2}
WITH today AS (
    SELECT a.customer_id, MAX(a.region) AS region, SUM(a.amount) AS amount, SUM(a.order_cnt) AS order_cnt
    FROM {{{{ ref('{p1}') }}}} AS a
    WHERE a.ds = DATE '{{{{ ds }}}}'
    GROUP BY a.customer_id
),
yesterday AS (
    SELECT b.customer_id, SUM(b.amount) AS amount
    FROM {{{{ ref('{p2}') }}}} AS b
    WHERE b.ds = DATE '{{{{ ds_add(ds, -1) }}}}'
    GROUP BY b.customer_id
)
SELECT
    t.customer_id,
    t.region,
    CAST(t.amount AS DECIMAL(18, 2)) AS amount,
    t.order_cnt,
    CAST(COALESCE(y.amount, 0) AS DECIMAL(18, 2)) AS prev_amount
FROM today AS t
LEFT JOIN yesterday AS y ON y.customer_id = t.customer_id
{{% if data_timestamp.day == 1 %}}
WHERE t.order_cnt > 0  -- first of the month: dormant customers leave the snapshot
{{% endif %}}
""",
    """\
-- {name}: 7-day window of {p1}, restricted to customers present in {p2} today
WITH recent AS (
    SELECT a.customer_id, a.region, a.amount, a.order_cnt, a.ds
    FROM {{{{ ref('{p1}') }}}} AS a
    WHERE a.ds BETWEEN DATE '{{{{ ds_add(ds, -6) }}}}' AND DATE '{{{{ ds }}}}'
)
SELECT
    r.customer_id,
    MAX(r.region) AS region,
    CAST(SUM(r.amount) AS DECIMAL(18, 2)) AS amount,
    SUM(r.order_cnt) AS order_cnt,
    CAST(SUM(CASE WHEN r.ds = DATE '{{{{ ds_add(ds, -1) }}}}' THEN r.amount ELSE 0 END)
         AS DECIMAL(18, 2)) AS prev_amount
FROM recent AS r
JOIN {{{{ ref('{p2}') }}}} AS c ON c.customer_id = r.customer_id AND c.ds = DATE '{{{{ ds }}}}'
WHERE c.region <> 'test'
{{% if ds >= '2020-01-01' %}}
  AND r.order_cnt >= 0  -- the source backfilled negative counts before 2020
{{% endif %}}
GROUP BY r.customer_id
""",
    """\
-- {name}: per-region roll-up of {p1} with {p2}'s previous day
WITH cur AS (
    SELECT a.customer_id, a.region, SUM(a.amount) AS amount, COUNT(*) AS order_cnt
    FROM {{{{ ref('{p1}') }}}} AS a
    WHERE a.ds = DATE '{{{{ ds }}}}' AND strftime(a.ds, '%Y%m%d') = '{{{{ bizdate }}}}'
    GROUP BY a.customer_id, a.region
),
prev AS (
    SELECT b.customer_id, SUM(b.amount) AS amount
    FROM {{{{ ref('{p2}') }}}} AS b
    WHERE b.ds = DATE '{{{{ ds_add(ds, -1) }}}}'
    GROUP BY b.customer_id
)
SELECT
    cur.customer_id,
    cur.region,
    CAST(cur.amount AS DECIMAL(18, 2)) AS amount,
    cur.order_cnt,
    CAST(COALESCE(prev.amount, 0) AS DECIMAL(18, 2)) AS prev_amount
FROM cur
LEFT JOIN prev ON prev.customer_id = cur.customer_id
""",
]


def table_names(n: int) -> list[str]:
    return [NAMES[i] if i < len(NAMES) else f"t{i + 1:02d}" for i in range(n)]


def parents(names: list[str], i: int) -> list[str]:
    return [] if i == 0 else sorted({names[i - 1], names[max(0, i - 2)]})


def template_source(names: list[str], i: int) -> str:
    if i == 0:
        return ROOT_SQL.format(name=names[0])
    p1, p2 = names[i - 1], names[max(0, i - 2)]
    return STYLES[(i - 1) % len(STYLES)].format(name=names[i], p1=p1, p2=p2)


def build_project(root: Path, tables: int, days: int) -> list[str]:
    """Write the synthetic project; returns its table names in dependency order."""
    names = table_names(tables)
    for sub in ("tables", "sql", "backfills"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "project.yaml").write_text(
        "name: bench\ndialect: duckdb\nengine: {type: duckdb, path: .backfill/warehouse.duckdb}\n"
        "state: .backfill/state.db\nmax_parallel: 4\nparams: {source_dir: data}\n")
    for i, name in enumerate(names):
        (root / "sql" / f"{name}.sql").write_text(template_source(names, i))
        fields = "\n".join(f'  - {{name: {f}, type: "{t}"}}' for f, t in FIELDS)
        deps = parents(names, i)
        (root / "tables" / f"{name}.yaml").write_text(
            f"name: {name}\nkind: {KINDS[i % len(KINDS)]}\ngranularity: day\npartition: ds\n"
            f"primary_key: [customer_id]\nfields:\n{fields}\nsql: ../sql/{name}.sql\n"
            + (f"depends_on: [{', '.join(deps)}]\n" if deps else ""))
    end = START + timedelta(days=days - 1)
    targets = "\n".join(f"  - table: {n}" for n in names)
    (root / "backfills" / "reload.yaml").write_text(
        f"name: bench_reload\ntargets:\n{targets}\nscope: current\n"
        f"data_timestamp: {{start: {START.isoformat()}, end: {end.isoformat()}}}\n"
        "runtime: immediately\ngroups: 4\norder: ascending\nskip: none\ndry_run: none\n")
    return names


# ------------------------------------------------------------------------------------------ measuring

def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_render(root: Path, names: list[str], days: int) -> tuple[int, float]:
    """Every instance's template rendered with plain jinja2: no sandbox, no marks, no checks."""
    import jinja2

    def ds_add(value: str, n: int) -> str:
        return (datetime.strptime(str(value), "%Y-%m-%d") + timedelta(days=int(n))).strftime("%Y-%m-%d")

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals.update(ds_add=ds_add, ref=lambda n: n)
    templates = [env.from_string((root / "sql" / f"{n}.sql").read_text()) for n in names]
    started = time.perf_counter()
    count = total = 0
    for tpl in templates:
        for d in range(days):
            ts = datetime.combine(START + timedelta(days=d), datetime.min.time())
            total += len(tpl.render(ds=ts.strftime("%Y-%m-%d"), ds_nodash=ts.strftime("%Y%m%d"),
                                    bizdate=ts.strftime("%Y%m%d"), data_timestamp=ts, params={}))
            count += 1
    assert total > 0
    return count, time.perf_counter() - started


def tool_render(root: Path) -> tuple[int, float]:
    """Every instance rendered through backfill's own sandboxed, date-marking renderer (no checks)."""
    from backfill.plan.planner import expand_timestamps
    from backfill.spec.loader import load_project
    from backfill.sql.compiler import ProjectCompiler

    project = load_project(root)
    compiler = ProjectCompiler(project)
    spec = next(iter(project.backfills.values()))
    params = {**project.params, **spec.params}
    stamps = expand_timestamps(spec.data_timestamp or (), False)
    started = time.perf_counter()
    count = 0
    for name in sorted(project.tables):
        table = project.tables[name]
        for ts in stamps:
            compiler.render(table, ts, params)
            count += 1
    return count, time.perf_counter() - started


def run_validate(root: Path) -> tuple[float, int, int, int]:
    """(wall s, instances, distinct shapes checked, transforms) of one validate_project call."""
    from backfill.plan.validate import validate_project

    gc.collect()
    started = time.perf_counter()
    validated = validate_project(root)
    wall = time.perf_counter() - started
    out = (wall, validated.instance_count, len(validated.compiler._checks), len(validated.compiler._transforms))
    del validated
    gc.collect()
    return out


def traced_validate(root: Path) -> float:
    """tracemalloc peak (MB) of Python allocations during one validate_project call."""
    from backfill.plan.validate import validate_project

    gc.collect()
    tracemalloc.start()
    try:
        validated = validate_project(root)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del validated
    gc.collect()
    return peak / 1e6


def run_cli(root: Path, out: Path) -> tuple[float, float, int, int]:
    """(wall s, child peak RSS MB, exit code, bytes of JSON) of `backfill plan --format json`."""
    exe = Path(sys.executable).parent / "backfill"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from backfill.cli.main import run; run()"]
    cmd += ["plan", "--format", "json", "--project", str(root)]
    started = time.perf_counter()
    with open(out, "wb") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, env=os.environ.copy(), check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace")[-2000:])
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, child_mb, proc.returncode, out.stat().st_size


def verdict(wall: float, mb: float) -> str:
    ok = wall <= GOAL_SECONDS and mb <= GOAL_MB
    return ("PASS" if ok else "FAIL") + f" (goal <= {GOAL_SECONDS:g} s, <= {GOAL_MB:g} MB)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=3650)
    ap.add_argument("--tables", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3, help="validate_project runs to time (min and median)")
    ap.add_argument("--no-cli", action="store_true", help="skip the `backfill plan` subprocess")
    ap.add_argument("--keep", action="store_true", help="keep the generated project and print its path")
    ap.add_argument("--strict", action="store_true", help="exit 1 when validate misses the goal")
    args = ap.parse_args(argv)
    if args.tables < 1 or args.days < 1 or args.repeat < 1:
        ap.error("--days, --tables and --repeat must be >= 1")

    work = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    project = work / "project"
    try:
        names = build_project(project, args.tables, args.days)
        import backfill.plan.validate  # noqa: F401 - imports are not what (b) measures; (d) includes them

        rss_imports = rss_mb()
        # interleaved, so that noise from other work on the machine hits both sides alike
        bases: list[float] = []
        renders: list[float] = []
        runs: list[tuple[float, int, int, int]] = []
        rss_base = rss_validate = rss_imports
        for i in range(args.repeat):
            n_base, t = baseline_render(project, names, args.days)
            bases.append(t)
            gc.collect()
            if i == 0:
                rss_base = rss_mb()  # ru_maxrss only grows: read each peak right after its step
            runs.append(run_validate(project))
            if i == 0:
                rss_validate = rss_mb()
            n_render, t = tool_render(project)
            renders.append(t)
        rss_end = rss_mb()
        walls = [r[0] for r in runs]
        _, instances, shapes, transforms = runs[0]
        t_base, t_render = min(bases), min(renders)
        t_min, t_med = min(walls), statistics.median(walls)
        traced_mb = traced_validate(project)

        cli = None if args.no_cli else run_cli(project, work / "plan.json")

        print(f"plan_scale: {args.tables} tables x {args.days} days, groups 4, "
              f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), "
              f"load average {os.getloadavg()[0]:.2f} at the end")
        header = f"{'step':<26} {'instances':>10} {'wall_s':>8} {'peak_mb_rss':>12} {'x_baseline':>11}  result"
        print(header)
        print("-" * len(header))
        print(f"{'baseline jinja2 render':<26} {n_base:>10} {t_base:>8.3f} {rss_base:>12.1f} {1.0:>11.2f}  floor")
        print(f"{'backfill render only':<26} {n_render:>10} {t_render:>8.3f} {'':>12} "
              f"{t_render / t_base:>11.2f}  sandbox + date marks, no checks")
        print(f"{'validate_project (min)':<26} {instances:>10} {t_min:>8.3f} {rss_validate:>12.1f} "
              f"{t_min / t_base:>11.2f}  {verdict(t_min, rss_validate)}")
        print(f"{'validate_project (median)':<26} {instances:>10} {t_med:>8.3f} {rss_validate:>12.1f} "
              f"{t_med / t_base:>11.2f}  {verdict(t_med, rss_validate)}")
        if cli is not None:
            c_wall, c_mb, c_rc, c_bytes = cli
            result = f"exit {c_rc}, {c_bytes / 1e6:.1f} MB of JSON; " + verdict(c_wall, c_mb)
            print(f"{'cli plan --format json':<26} {instances:>10} {c_wall:>8.3f} {c_mb:>12.1f} "
                  f"{c_wall / t_base:>11.2f}  {result}")
        print()
        print(f"runs (s):                baseline {', '.join(f'{w:.3f}' for w in bases)}; "
              f"validate {', '.join(f'{w:.3f}' for w in walls)}")
        print(f"per instance:            baseline {1e6 * t_base / max(1, n_base):.1f} us, "
              f"render {1e6 * t_render / max(1, n_render):.1f} us, "
              f"validate {1e6 * t_min / max(1, instances):.1f} us")
        print(f"tracemalloc peak:        {traced_mb:.1f} MB (Python allocations of one validate_project)")
        print(f"rss:                     {rss_imports:.1f} MB after imports, {rss_base:.1f} MB after baseline, "
              f"{rss_validate:.1f} MB after validate, {rss_end:.1f} MB at the end (process peaks)")
        print(f"shapes checked:          {shapes} distinct (table, shape) for {instances} instances "
              f"({instances / max(1, shapes):.0f} instances per sqlglot check); {transforms} transforms")
        if args.keep:
            print(f"project:                 {project}")
        failed = t_min > GOAL_SECONDS or rss_validate > GOAL_MB
        if cli is not None and cli[2] != 0:
            print("error: `backfill plan` failed", file=sys.stderr)
            return 1
        return 1 if (args.strict and failed) else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
