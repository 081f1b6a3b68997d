"""The temporary Prefect server of a process without PREFECT_API_URL: its database under the
project's `.backfill/prefect/`, never an orphan (also after `kill -9` of its parent), and no
import of Prefect's server modules by the applying process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from steering import dates

BACKFILL = str(Path(sys.executable).parent / "backfill")

_PARENT = """
import sys, threading, time
from pathlib import Path
from backfill.run import tempserver

def spawn():
    server = tempserver.start(Path(sys.argv[1]))
    print(server.process.pid, flush=True)
    server.url()
    print("ready", flush=True)

if sys.argv[2] == "main":
    spawn()
else:  # spawned by a thread that ends at once: the pipe watchdog, not the death signal, must hold
    t = threading.Thread(target=spawn)
    t.start()
    t.join()
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


@pytest.mark.parametrize("spawner", ["main", "thread"])
def test_the_temporary_server_dies_with_its_parent_on_kill_9(home: Path, spawner: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(home), spawner], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert parent.stdout is not None
    try:
        server = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == b"ready"
        assert _alive(server)
        # it runs only on a core the apply leaves idle, every thread of it
        threads = [int(t) for t in os.listdir(f"/proc/{server}/task")]
        assert len(threads) > 1 and {os.sched_getscheduler(t) for t in threads} == {os.SCHED_IDLE}
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 15
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server), "the temporary server outlived its parent"


def test_embedded_apply_keeps_prefect_under_the_project_and_leaves_nothing(tutorial: Path) -> None:
    dates(tutorial, "integration", "2026-06-25", "2026-07-01")
    dates(tutorial, "logical_tables", "2026-07-01", "2026-07-01")
    out = subprocess.run([BACKFILL, "apply", "--yes", "--project", str(tutorial)], env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tutorial / ".backfill" / "prefect" / "prefect.db").is_file(), "Prefect's database lives in the project"
    assert wait_for_no_server(tutorial / ".backfill" / "prefect"), "no temporary server is left running"


def test_a_standing_server_means_no_prefect_server_module_is_imported(tutorial: Path, prefect_api: str) -> None:
    dates(tutorial, "integration", "2026-06-25", "2026-06-25")
    (tutorial / "backfills" / "logical_tables.yaml").unlink()
    script = ("import sys\nfrom pathlib import Path\nfrom backfill.run.apply import apply_project\n"
              f"assert apply_project(Path({str(tutorial)!r}), say=lambda m: None).ok\n"
              "print(sorted(m for m in sys.modules if m.startswith('prefect.server.api')))\n")
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PREFECT_API_URL": prefect_api},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert not (tutorial / ".backfill" / "prefect").exists()


def wait_for_no_server(home: Path, seconds: float = 60) -> bool:
    """True once no temporary server runs in `home`: one lingers after its apply only until it has
    recorded the run (TemporaryServer.linger)."""
    deadline = time.monotonic() + seconds
    while _servers_in(home):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _servers_in(home: Path) -> list[int]:
    """Live processes whose working directory is `home` (the temporary server runs there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == home.resolve() and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_an_apply_server_takes_streams_at_once_and_boots_prefect_only_when_asked(tmp_path: Path) -> None:
    import socket
    import urllib.request

    from backfill.run import tempserver

    server = tempserver.start(tmp_path / "prefect", defer=True)
    try:
        time.sleep(3)  # longer than a warm boot from the cached database
        with pytest.raises(OSError):  # Prefect is not serving: nothing of it shares the CPU with a run
            urllib.request.urlopen(f"{server.api_url}/health", timeout=1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a stream is taken at once
            sock.connect("\0" + server.reporter_socket)
        maps = Path(f"/proc/{server.process.pid}/maps")
        assert "pydantic_core" not in maps.read_text()  # the light part only: no Prefect (nor its pydantic)
        assert server.url(timeout=120) == server.api_url  # asked for: it boots now
        assert "pydantic_core" in maps.read_text()
    finally:
        server.stop()
