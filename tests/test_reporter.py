"""Prefect hears of an embedded apply from a reporter process, never on the path of the instances.

- the applying process never imports Prefect, and the flow run is still there with its final state;
- a Prefect that cannot be reached never stops a backfill: one warning line, the ledger complete;
- `kill -9` of the apply mid-run leaves its flow run Failed with the reason, not Running forever;
- the temporary server of a new project starts from the cached, migrated Prefect database.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from steering import dates, edit, statuses
from test_faults import processes_marked
from test_tempserver import _alive, wait_for_no_server

BACKFILL = str(Path(sys.executable).parent / "backfill")


def _small(project: Path, name: str) -> None:
    dates(project, "integration", "2026-06-25", "2026-06-28")
    (project / "backfills" / "logical_tables.yaml").unlink()
    spec = project / "backfills" / "integration.yaml"
    spec.write_text(spec.read_text().replace("name: tutorial_integration", f"name: {name}"))


def _flow_runs(api: str, name: str, until: str, seconds: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + seconds
    while True:
        runs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"name": {"any_": [name]}}}).json()
        if (runs and runs[0]["state_type"] == until) or time.monotonic() > deadline:
            return list(runs)
        time.sleep(0.2)


def test_the_applying_process_never_imports_prefect(tutorial: Path, prefect_api: str) -> None:
    _small(tutorial, "no_prefect_here")
    script = ("import sys\nfrom pathlib import Path\nfrom backfill.run.apply import apply_project\n"
              f"assert apply_project(Path({str(tutorial)!r}), say=lambda m: None).ok\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))\n")
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PREFECT_API_URL": prefect_api},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    runs = _flow_runs(prefect_api, "no_prefect_here", "COMPLETED", seconds=1)
    assert [r["state_type"] for r in runs] == ["COMPLETED"], "recorded before apply returned"
    assert runs[0]["state"]["message"] == "12 instance(s) succeeded"  # type: ignore[index]


def test_an_unreachable_prefect_never_stops_a_backfill(tutorial: Path) -> None:
    _small(tutorial, "prefect_down")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "BACKFILL_PREFECT_WAIT": "2"}
    out = subprocess.run([BACKFILL, "apply", "--yes", "--project", str(tutorial)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: Prefect did not record this run completely: RuntimeError: the Prefect API at "
                        f"http://127.0.0.1:{port}/api did not answer within 2 s (the ledger has the whole "
                        "record: `backfill instances`)"]
    assert "Traceback" not in out.stderr
    assert set(statuses(tutorial).values()) == {"success"} and len(statuses(tutorial)) == 12


def test_kill_9_mid_apply_leaves_its_flow_run_failed_with_the_reason(tutorial: Path, prefect_api: str) -> None:
    dates(tutorial, "integration", "2026-06-30", "2026-07-02")
    dates(tutorial, "logical_tables", "2026-07-01", "2026-07-02")
    edit(tutorial / "backfills" / "logical_tables.yaml", "name: tutorial_logical", "name: killed_mid_run")
    where = "WHERE o.ds = DATE '{{ ds }}'"  # fct_order_buy_di of 07-02 scans for minutes unless stopped
    edit(tutorial / "sql" / "fct_order_buy_di.sql", where, where + "{% if ds == '2026-07-02' %}\n    AND "
         "(SELECT sum(hash(r.range)) FROM range(20000000000) AS r) IS NOT NULL{% endif %}")
    slow = "killed_mid_run/fct_order_buy_di/2026-07-02"
    proc = subprocess.Popen([BACKFILL, "apply", "--yes", "--project", str(tutorial)],
                            env={**os.environ, "PREFECT_API_URL": prefect_api},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while statuses(tutorial).get(slow) != "running" and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the apply ended before the kill; the test would prove nothing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    runs = _flow_runs(prefect_api, "killed_mid_run", "FAILED")
    assert [r["state_type"] for r in runs] == ["FAILED"]
    assert runs[0]["state"]["message"] == (  # type: ignore[index]
        "the applying process ended before this backfill finished (killed?); `backfill apply` resumes it")


def test_a_new_project_starts_prefect_from_the_cached_migrated_database(
        tutorial: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tutorial_copy import copy_tutorial

    from backfill.run import tempserver
    from backfill.spec.tutorial import generate_source_data

    cache = tmp_path_factory.mktemp("cache")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["XDG_CACHE_HOME"] = str(cache)
    _small(tutorial, "first_project")
    out = subprocess.run([BACKFILL, "apply", "--yes", "--project", str(tutorial)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert wait_for_no_server(tutorial / ".backfill" / "prefect"), "it records the run after the apply, then exits"
    templates = list((cache / "backfill").glob("prefect-*-sqlite.db"))
    assert len(templates) == 1, "the first temporary server's migrated database is cached"
    with sqlite3.connect(templates[0]) as con:
        assert con.execute("SELECT count(*) FROM flow_run").fetchone()[0] == 0, "cached empty"

    second = tmp_path_factory.mktemp("second") / "retail"
    copy_tutorial(second)
    generate_source_data(second)
    _small(second, "second_project")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        server = tempserver.start(second / ".backfill" / "prefect")
        try:
            assert not server.fresh and (second / ".backfill" / "prefect" / "prefect.db").is_file()
        finally:
            tempserver.stop_all()
    finally:
        os.environ.pop("XDG_CACHE_HOME")
    out = subprocess.run([BACKFILL, "apply", "--yes", "--project", str(second)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert wait_for_no_server(second / ".backfill" / "prefect")
    with sqlite3.connect(second / ".backfill" / "prefect" / "prefect.db") as con:
        runs = con.execute("SELECT name, state_type, state_name FROM flow_run").fetchall()
    assert runs == [("second_project", "COMPLETED", "Completed")], "the embedded flow run, recorded with its state"


def test_a_refused_first_apply_stops_prefect_and_leaves_nothing(tutorial: Path) -> None:
    from test_tempserver import _servers_in

    edit(tutorial / "sql" / "dws_all.sql", "{{ ref('fct_order_buy_di') }}", "{{ ref('no_such_table') }}")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run([BACKFILL, "apply", "--yes", "--project", str(tutorial)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no_such_table" in out.stderr and "Traceback" not in out.stderr
    assert not (tutorial / ".backfill").exists(), "the temporary server started early is gone with its folder"
    assert not _servers_in(tutorial / ".backfill" / "prefect")


def test_apply_starts_the_temporary_server_first_and_a_usage_error_leaves_nothing(
        tutorial: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run([BACKFILL, "apply", "--no-such-option", "--project", str(tutorial)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert not (tutorial / ".backfill").exists(), "the server started first is stopped and its folder removed"

    from backfill.cli.main import _prestart
    from backfill.run import tempserver

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    try:
        _prestart(["backfill", "apply", "-p", str(tutorial), "--yes"])
        server = tempserver.adopt(tutorial)
        assert server is not None and server.made_folder and server.process.poll() is None
    finally:
        tempserver.stop_all()
        if "server" in locals() and server is not None:
            import shutil

            shutil.rmtree(server.home.parent, ignore_errors=True)


def test_embedded_applies_return_before_prefect_and_each_run_is_recorded(tutorial: Path) -> None:
    """The temporary server records a run after its apply returns; the next apply's server waits for it."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    _small(tutorial, "recorded_later")
    for n in range(2):
        if n:  # a changed template: its partitions run again, at once
            edit(tutorial / "sql" / "ods_order.sql", "SELECT order_id,", "SELECT DISTINCT order_id,")
        out = subprocess.run([BACKFILL, "apply", "--yes", "--project", str(tutorial)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
    assert wait_for_no_server(tutorial / ".backfill" / "prefect")
    with sqlite3.connect(tutorial / ".backfill" / "prefect" / "prefect.db") as con:
        runs = con.execute("SELECT name, state_type FROM flow_run ORDER BY created").fetchall()
    assert runs == [("recorded_later", "COMPLETED"), ("recorded_later", "COMPLETED")]


def test_instance_events_travel_several_to_a_line_and_arrive_one_by_one() -> None:
    # the apply's side batches thousands of events a second into `logs` lines; the reporter's side
    # hands its flow each event as it was, in order, the other messages between them untouched
    import io

    from backfill.run.reporter_child import _Stream
    from backfill.run.reportstream import InstanceEvent as Event
    from backfill.run.reportstream import encode_stream

    sent: list[dict[str, object] | Event] = [{"op": "begin", "key": "r1"},
                                             Event("r1", 0, "INFO", "a started", False, 1.0),
                                             Event("r1", 1, "ERROR", "b failed: 'x'\nline", True, 2.0),
                                             Event("r2", 0, "INFO", "c success: 3 row(s)", True, 3.0),
                                             {"op": "group_end", "key": "r1", "group": 0},
                                             Event("r1", 0, "INFO", "d", True, 4.0)]
    raw = encode_stream(sent)
    assert raw.count(b"\n") == 5 and raw.count(b'"op":"logs"') == 3  # r1's first two share a line
    stream = _Stream(io.BytesIO(raw), io.StringIO())
    got = [stream.inbox.get(timeout=5) for _ in range(len(sent) + 1)]
    assert got[-1]["op"] == "eof"
    expected = [m if isinstance(m, dict) else {"op": "log", "key": m.key, "group": m.group, "level": m.level,
                                                "msg": m.msg, "ended": m.ended, "t": m.t} for m in sent]
    assert got[:-1] == expected


def test_a_backfills_start_is_in_the_reporters_pipe_before_its_first_instance_runs() -> None:
    # the stream goes out every 0.1 s; a `kill -9` right after the first instance started used to
    # find the start still in the apply's memory, and Prefect never heard of the backfill
    import io

    from backfill.run.reporting import Reporter, _Link

    out_r, out_w = os.pipe()
    os.set_blocking(out_r, False)

    class Pipe(_Link):
        def open(self) -> tuple[io.BufferedWriter, io.BytesIO]:
            return open(out_w, "wb"), io.BytesIO(b"")  # noqa: SIM115 - the reporter closes it

        def abort(self) -> None:
            pass

    reporter = Reporter(Pipe(), None, standing=False)
    try:
        reporter._flushed({"op": "begin", "key": "r1", "name": "b"})
        assert os.read(out_r, 65536) == b'{"op":"begin","key":"r1","name":"b"}\n'
    finally:
        reporter.close(timeout=5)
        os.close(out_r)


def test_the_reporter_for_a_standing_server_is_spawned_before_the_imports_and_taken_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backfill.run import ownreporter

    with socket.socket() as s:  # nobody listens: the reporter waits for the API, then is stopped here
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{s.getsockname()[1]}/api")
    (tmp_path / "project.yaml").write_text("name: p\n")
    ownreporter.prestart(tmp_path)  # a first apply: the folder for its log is made, and known as made
    process = ownreporter.take(tmp_path)
    assert process is not None and process.poll() is None and ownreporter.made_folder(tmp_path)
    assert (tmp_path / ".backfill" / "prefect-reporter.log").is_file()
    assert ownreporter.take(tmp_path) is None  # taken once
    process.kill()
    process.wait()
    ownreporter.prestart(tmp_path)
    left = ownreporter._PRESTARTED[tmp_path.resolve()]
    ownreporter.discard_untaken()  # the command ended before an apply took it: the folder it made goes too
    assert left.returncode is not None and ownreporter.take(tmp_path) is None
    assert not (tmp_path / ".backfill").exists()
    ownreporter._MADE.clear()


@pytest.mark.parametrize("refusal", ["usage", "specs"])
def test_a_refused_first_apply_against_a_standing_server_leaves_nothing(tutorial: Path, refusal: str) -> None:
    # the reporter spawned before the imports is stopped, and the `.backfill/` made for its log removed
    tag = f"BACKFILL_TEST_TAG_{os.getpid()}_{time.monotonic_ns()}"
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", tag: "1"}
    args = [BACKFILL, "apply", "--yes", "--project", str(tutorial)]
    if refusal == "usage":
        args.append("--no-such-option")
    else:
        edit(tutorial / "sql" / "dws_all.sql", "{{ ref('fct_order_buy_di') }}", "{{ ref('no_such_table') }}")
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == (2 if refusal == "usage" else 1), out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert [pid for pid in processes_marked(tag) if _alive(pid)] == []
    assert not (tutorial / ".backfill").exists()
