"""Faults around an apply: reserved names, library warnings, concurrent first applies on a fresh
PostgreSQL ledger, signals, a read-only ledger, a full disk, a dropped ledger connection.

Each fault is injected from outside the product (a signal, a file mode, a file-size limit, a backend
terminated by the server), triggered by what the ledger says. After each, one more `apply` must end
equal to the oracle, with exactly one committed write marker per instance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import duckdb
import oracle
import pytest
from conftest import TUTORIAL_TABLES, warehouse_rows
from conftest_pg import PgServer, pg_server  # noqa: F401 - the fixture
from steering import dates, open_when_read, statuses

from backfill.errors import SpecErrors
from backfill.plan.workspace import open_ledger
from backfill.run.apply import apply_project
from backfill.spec.loader import load_project

BACKFILL = str(Path(sys.executable).parent / "backfill")
INTEGRATION = [date(2026, 6, 25) + timedelta(days=i) for i in range(8)]  # 2026-06-25 .. 2026-07-02
LOGICAL = [date(2026, 7, 1), date(2026, 7, 2)]
INSTANCES = 3 * len(INTEGRATION) + 4 * len(LOGICAL)


@pytest.fixture()
def small(tutorial: Path) -> Path:
    """The tutorial narrowed to 40 instances (the 7-day window of dws_all still fully loaded)."""
    dates(tutorial, "integration", INTEGRATION[0].isoformat(), INTEGRATION[-1].isoformat())
    dates(tutorial, "logical_tables", LOGICAL[0].isoformat(), LOGICAL[-1].isoformat())
    return tutorial


def use_postgres_ledger(project: Path, pg: PgServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The project's ledger in a fresh PostgreSQL schema (the warehouse stays DuckDB); its name."""
    schema = pg.new_schema()
    monkeypatch.setenv("BF_TEST_STATE_URL", pg.url)
    spec = project / "project.yaml"
    text = spec.read_text()
    assert "state: .backfill/state.db" in text
    ledger = f"state: {{url_env: BF_TEST_STATE_URL, schema: {schema}}}"
    spec.write_text(text.replace("state: .backfill/state.db", ledger))
    return schema


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BACKFILL, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def our_lines_only(stderr: str) -> None:
    """Nothing but the tool's own lines on stderr: no traceback, no library warning."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert all(ln.startswith(("error:", "note:", "waiting for", "recovered")) for ln in lines), stderr


def assert_exactly_once(project: Path) -> None:
    """Warehouse equal to the oracle, one committed write marker per instance, the ledger all success
    with one partition record each and no lock left."""
    loaded = set(INTEGRATION)
    for table in TUTORIAL_TABLES:
        for ds in (INTEGRATION if table.startswith("ods_") else LOGICAL):
            assert warehouse_rows(project, table, ds.isoformat()) == oracle.expected(project, table, ds, loaded), \
                (table, ds)
    con = duckdb.connect(str(project / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        writes = con.execute("SELECT split_part(attempt_id, ':', 2), count(*) FROM _backfill_commits "
                             "GROUP BY 1").fetchall()
    finally:
        con.close()
    assert len(writes) == INSTANCES
    assert all(n == 1 for _, n in writes), [w for w in writes if w[1] != 1]
    ledger = open_ledger(load_project(project))
    try:
        statuses = [r.status for r in ledger.instances()]
        assert statuses == ["success"] * INSTANCES, sorted(set(statuses))
        assert ledger.lock_holder() is None
        assert len(ledger.partition_states()) == INSTANCES
    finally:
        ledger.close()


def apply_again(project: Path) -> None:
    report = apply_project(project, say=lambda m: None)
    assert report.ok, report.backfills
    assert_exactly_once(project)


# ------------------------------------------------------------------ reserved names, library warnings

def test_ledger_tables_are_reserved_where_the_ledger_shares_the_warehouse(small: Path) -> None:
    (small / "tables" / "extra.yaml").write_text(
        "name: bf_instances\nkind: fact\nfields:\n  - {name: id, type: BIGINT}\nsql_inline: SELECT 1 AS id\n")
    load_project(small)  # a SQLite ledger: `bf_instances` is a name like any other
    spec = small / "project.yaml"
    spec.write_text(spec.read_text()
                    .replace("engine: {type: duckdb, path: .backfill/warehouse.duckdb}",
                             "engine: {type: postgres, url_env: BF_WAREHOUSE}")
                    .replace("state: .backfill/state.db", "state: {url_env: BF_WAREHOUSE}"))
    with pytest.raises(SpecErrors) as caught:
        load_project(small)
    assert [e.one_line() for e in caught.value.errors] == [
        "error: tables/extra.yaml:1:7: name: table name 'bf_instances' is reserved: the ledger shares the "
        "warehouse's schema and keeps its 'bf_*' tables there; rename the table, or give the ledger its own "
        "schema (state.schema)"]


@pytest.mark.parametrize("name", ["pg_authid", "pg_shadow", "information_schema", "duckdb_settings", "sqlite_master"])
def test_table_names_an_engine_resolves_to_its_system_catalog_are_reserved(small: Path, name: str) -> None:
    (small / "tables" / "extra.yaml").write_text(
        f"name: {name}\nkind: fact\nfields:\n  - {{name: id, type: BIGINT}}\nsql_inline: SELECT 1 AS id\n")
    with pytest.raises(SpecErrors) as caught:
        load_project(small)
    assert [e.one_line() for e in caught.value.errors] == [
        f"error: tables/extra.yaml:1:7: name: table name '{name}' is reserved: the engines resolve names starting "
        "with 'pg_', 'information_schema', 'duckdb_', 'sqlite_', 'pragma_' to their system catalogs; rename the table"]


def test_library_warnings_never_come_before_the_error_line(small: Path) -> None:
    for template in ("LOAD httpfs;\nSELECT 1 AS product_id\n", "LOAD httpfs\n"):
        (small / "sql" / "dim_products.sql").write_text(template)
        done = run_cli("validate", "--project", str(small))
        assert done.returncode == 1
        assert done.stderr.startswith("error: sql/dim_products.sql:1:"), done.stderr  # ours, first
        assert "unsupported syntax" not in done.stderr + done.stdout
        assert "Traceback" not in done.stderr


# ------------------------------------------------------------------ a fresh PostgreSQL ledger, four applies at once

def test_four_simultaneous_first_applies_on_a_fresh_postgresql_ledger(
        small: Path, pg_server: PgServer, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    use_postgres_ledger(small, pg_server, monkeypatch)
    procs = [subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(small)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, _out, err in results:
        assert code in (0, 1), err
        our_lines_only(err)
        if code == 1:
            assert "another apply holds the ledger lock" in err or "did not succeed" not in err, err
    assert any(code == 0 for code, _o, _e in results), results
    apply_again(small)


# ------------------------------------------------------------------ SIGTERM, SIGINT

SLOW = "tutorial_logical/fct_order_buy_di/2026-07-02"
SLOW_CONDITION = "(SELECT count(*) FROM range(100000000000) t(x) WHERE x % 7 = 3) >= 0"  # true, and long


def add_condition(project: Path, ds: str, condition: str) -> str:
    """fct_order_buy_di of `ds` gets one more (true) WHERE condition; the template's text before."""
    path = project / "sql" / "fct_order_buy_di.sql"
    before = path.read_text()
    where = "WHERE o.ds = DATE '{{ ds }}'"
    assert before.count(where) == 1
    path.write_text(before.replace(where, where + "{% if ds == '" + ds + "' %}\n    AND " + condition + "{% endif %}"))
    return before


def wait_for(project: Path, proc: subprocess.Popen[str], instance: str, status: str) -> None:
    deadline = time.monotonic() + 180
    while statuses(project).get(instance) != status:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, statuses(project)
        time.sleep(0.05)


def processes_marked(mark: str) -> list[int]:
    """Live processes whose environment carries `mark` (whatever their parent or session now)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_apply_kills_cleanly_and_apply_resumes(small: Path, prefect_api: str, signum: int) -> None:
    before = add_condition(small, "2026-07-02", SLOW_CONDITION)
    mark = f"BACKFILL_FAULTS_TEST={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    if signum == signal.SIGINT:  # this one starts (and must stop) its own temporary Prefect server
        env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(small)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    wait_for(small, proc, SLOW, "running")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert proc.returncode == 1, (out, err)
    assert err.splitlines()[-1] == (f"error: apply stopped by {name}; its unfinished instances are killed; "
                                    "run `backfill apply` to resume"), err
    our_lines_only(err)
    assert processes_marked(mark) == []  # nothing left behind: no worker, no temporary server

    ledger = open_ledger(load_project(small))
    try:
        rows = {r.id: r for r in ledger.instances()}
        assert ledger.lock_holder() is None
    finally:
        ledger.close()
    killed = {i for i, r in rows.items() if r.status == "killed"}
    assert SLOW in killed and "tutorial_logical/dws_all/2026-07-02" in killed
    assert {rows[i].error for i in killed} == {f"killed: apply received {name}"}
    assert {r.status for r in rows.values()} <= {"success", "killed"}  # nothing left waiting or running

    (small / "sql" / "fct_order_buy_di.sql").write_text(before)
    apply_again(small)


def test_a_second_ctrl_c_exits_at_once_and_apply_recovers(small: Path, prefect_api: str) -> None:
    hold = small / "data" / "hold.csv"
    os.mkfifo(hold)  # reading it blocks in a way no interrupt ends: the first Ctrl-C cannot finish the run
    before = add_condition(small, "2026-07-02", "(SELECT count(*) FROM read_csv({{ source('data/hold.csv') }}, "
                                                "header = true, auto_detect = false, columns = {'x': 'INTEGER'})) >= 0")
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(small)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(small, proc, SLOW, "running")
    writer = open_when_read(hold, proc)  # `running` is recorded just before the SQL starts: wait for the read
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
        assert proc.poll() is None  # still waiting for the blocked read
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(writer)
    assert proc.returncode == 1, (out, err)
    assert err.splitlines()[-1].startswith("error: apply stopped at once by a second SIGINT; run `backfill apply`"), err

    (small / "sql" / "fct_order_buy_di.sql").write_text(before)
    hold.unlink()
    messages: list[str] = []
    report = apply_project(small, say=messages.append)
    assert report.ok, report.backfills
    assert any("broke the lock" in m for m in messages)
    assert_exactly_once(small)


# ------------------------------------------------------------------ storage faults

def without_root_override() -> None:
    """In the child: root's override of file modes dropped (a no-op for other users), so a read-only
    file is read-only for the apply too. PR_CAPBSET_DROP of CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        libc.prctl(24, cap, 0, 0, 0)


def markers(project: Path) -> dict[str, int]:
    con = duckdb.connect(str(project / ".backfill" / "warehouse.duckdb"), read_only=True)
    try:
        return {str(i): int(n) for i, n in con.execute(
            "SELECT split_part(attempt_id, ':', 2), count(*) FROM _backfill_commits GROUP BY 1").fetchall()}
    finally:
        con.close()


def no_success_without_its_write(project: Path) -> None:
    """The ledger says success only for instances whose write committed (a marker in the warehouse)."""
    ledger = open_ledger(load_project(project))
    try:
        succeeded = {r.id for r in ledger.instances() if r.status == "success"}
    finally:
        ledger.close()
    assert succeeded <= set(markers(project)), succeeded - set(markers(project))


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_ledger_is_one_error_line_and_changes_nothing(small: Path, prefect_api: str, what: str) -> None:
    spec = small / "backfills" / "logical_tables.yaml"
    spec.write_text(spec.read_text().replace("end: 2026-07-02}", "end: 2026-07-01}"))  # first: a part of it
    assert apply_project(small, say=lambda m: None).ok
    spec.write_text(spec.read_text().replace("end: 2026-07-01}", "end: 2026-07-02}"))
    state = small / ".backfill" / "state.db"
    target = state if what == "file" else state.parent
    written = markers(small)
    target.chmod(0o444 if what == "file" else 0o555)
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(state)!r}, 'r+b')"], preexec_fn=without_root_override,
                               capture_output=True)
        if probe.returncode == 0 and what == "file":
            pytest.skip("this user writes read-only files anyway (root without a droppable override)")
        done = subprocess.run([BACKFILL, "apply", "--yes", "--project", str(small)], capture_output=True, text=True,
                              timeout=300, preexec_fn=without_root_override)
    finally:
        target.chmod(0o644 if what == "file" else 0o755)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr == (f"error: the ledger {state} cannot be written: it is read-only (attempt to write a "
                           "readonly database); make the file and its folder writable for this user, then run "
                           "`backfill apply` again (it recovers what was running)\n")
    assert markers(small) == written  # nothing ran
    apply_again(small)


def test_a_full_disk_is_one_error_line_and_the_next_apply_recovers(small: Path, prefect_api: str) -> None:
    import resource

    def file_size_limit() -> None:  # a "disk" of 300 kB per file, for the apply only
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    done = subprocess.run([BACKFILL, "apply", "--yes", "--project", str(small)], capture_output=True, text=True,
                          timeout=300, preexec_fn=file_size_limit)
    assert done.returncode == 1, (done.stdout, done.stderr)
    state = small / ".backfill" / "state.db"
    assert done.stderr.splitlines()[-1].startswith(f"error: the ledger {state} cannot be written: the disk is full "
                                                   "or a size limit was reached"), done.stderr
    assert done.stderr.splitlines()[-1].endswith("free space on its disk, then run `backfill apply` again "
                                                 "(it recovers what was running)")
    our_lines_only(done.stderr)
    no_success_without_its_write(small)
    apply_again(small)


def test_a_terminated_postgresql_ledger_connection(small: Path, pg_server: PgServer, prefect_api: str,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    schema = use_postgres_ledger(small, pg_server, monkeypatch)
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(small)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    terminated = 0
    with psycopg.connect(pg_server.url, autocommit=True) as admin:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                done = admin.execute(f'SELECT count(*) FROM "{schema}".bf_instances WHERE status = %s',
                                     ["success"]).fetchone()
            except psycopg.errors.UndefinedTable:
                done = (0,)
            if done and done[0] >= 10:  # mid-run: kill every connection this apply holds on the ledger
                terminated = len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                               "WHERE application_name = %s", [f"backfill ledger {proc.pid}"])
                                 .fetchall())
                break
            time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert terminated >= 1, (out, err)
    our_lines_only(err)
    if proc.returncode:  # the connection came back for most writes; if not, one line says what happened
        assert err.splitlines()[-1].startswith("error: the PostgreSQL ledger at "), err
    no_success_without_its_write(small)
    apply_again(small)


def _local_ports(pid: int) -> list[int]:
    """TCP ports of the sockets process `pid` holds (its connections, as the server sees their client port)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            if fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_a_lost_warehouse_connection_fails_its_instance_never_succeeds(
        small: Path, pg_server: PgServer, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import psycopg
    import yaml

    state = use_postgres_ledger(small, pg_server, monkeypatch)
    warehouse = pg_server.new_schema()
    monkeypatch.setenv("BF_TEST_WAREHOUSE_URL", pg_server.url)
    spec = small / "project.yaml"
    spec.write_text(spec.read_text().replace("engine: {type: duckdb, path: .backfill/warehouse.duckdb}",
                                             f"engine: {{type: postgres, url_env: BF_TEST_WAREHOUSE_URL, "
                                             f"schema: {warehouse}}}"))
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(small)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    terminated = 0
    with psycopg.connect(pg_server.url, autocommit=True) as admin:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                done = admin.execute(f'SELECT count(*) FROM "{state}".bf_instances WHERE status = %s',
                                     ["success"]).fetchone()
            except psycopg.errors.UndefinedTable:
                done = (0,)
            if done and done[0] >= 10:  # mid-run: every warehouse connection of the apply (not the ledger's)
                terminated = len(admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = ANY(%s) "
                    "AND application_name NOT LIKE 'backfill ledger%%'", [_local_ports(proc.pid)]).fetchall())
                break
            time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert terminated >= 1, (out, err)
    our_lines_only(err)
    if proc.returncode:  # instances that lost their connection failed; or the apply stopped, saying where
        last = err.splitlines()[-1]
        assert "instance(s) did not succeed" in last or last.startswith("error: the PostgreSQL warehouse at "), err

    def marker_counts() -> dict[str, int]:
        with psycopg.connect(pg_server.url) as conn:
            return dict(conn.execute("SELECT split_part(attempt_id, ':', 2), count(*) "
                                     f'FROM "{warehouse}"._backfill_commits GROUP BY 1').fetchall())

    ledger = open_ledger(load_project(small))
    try:
        succeeded = {r.id for r in ledger.instances() if r.status == "success"}
    finally:
        ledger.close()
    assert succeeded <= set(marker_counts())  # never success for a write that did not commit

    report = apply_project(small, say=lambda m: None)
    assert report.ok, report.backfills
    loaded = set(INTEGRATION)
    with psycopg.connect(pg_server.url) as conn:
        for table in TUTORIAL_TABLES:
            fields = [f["name"] for f in yaml.safe_load((small / "tables" / f"{table}.yaml").read_text())["fields"]]
            cols = ", ".join(f'"{f}"' for f in fields)
            for ds in (INTEGRATION if table.startswith("ods_") else LOGICAL):
                rows = conn.execute(f'SELECT {cols} FROM "{warehouse}"."{table}" WHERE ds = %s', [ds]).fetchall()
                assert oracle.sort_rows(rows) == oracle.expected(small, table, ds, loaded), (table, ds)
    counts = marker_counts()
    assert len(counts) == INSTANCES and set(counts.values()) == {1}, counts


def test_a_warehouse_another_process_holds_is_one_error_line_and_changes_nothing(small: Path, prefect_api: str) -> None:
    spec = small / "backfills" / "logical_tables.yaml"
    spec.write_text(spec.read_text().replace("end: 2026-07-02}", "end: 2026-07-01}"))  # first: a part of it
    assert apply_project(small, say=lambda m: None).ok
    spec.write_text(spec.read_text().replace("end: 2026-07-01}", "end: 2026-07-02}"))
    ledger = open_ledger(load_project(small))
    try:
        before = [(r.id, r.status, r.attempts, r.run_id) for r in ledger.instances()]
    finally:
        ledger.close()
    written = markers(small)
    warehouse = small / ".backfill" / "warehouse.duckdb"
    hold = (f"import duckdb, sys\ncon = duckdb.connect({str(warehouse)!r})\n"
            "print('holding', flush=True)\nsys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        done = run_cli("apply", "--yes", "--project", str(small))
    finally:
        holder.communicate("", timeout=30)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot open the DuckDB warehouse {warehouse}: "), done.stderr
    our_lines_only(done.stderr)
    ledger = open_ledger(load_project(small))
    try:
        assert [(r.id, r.status, r.attempts, r.run_id) for r in ledger.instances()] == before  # nothing recorded
        assert ledger.lock_holder() is None
    finally:
        ledger.close()
    assert markers(small) == written
    apply_again(small)
