"""The temporary Prefect server of a process without PREFECT_API_URL: fast, private, never orphaned.

- Its database lives under the project's `.backfill/prefect/`. Prefect's migrations of an empty
  database take 7-10 s, so they run once per machine and Prefect version: the first temporary server
  migrates, the reporter (reporter_child.py) keeps a copy of that empty database in the user's cache
  (`~/.cache/backfill/prefect-VERSION.db`), and a new project's server starts from that copy.
- `start` only spawns the process and returns at once; `url()` waits for its health. An apply's server
  (`defer`) takes its stream at once but imports Prefect and boots only after the apply ran: it is
  the run's recorder, has no UI, and nobody waits for it; its 3-4 s of CPU never share the cores
  with the instances. It runs `SCHED_IDLE` in any case.
- The parent never imports Prefect's server modules (1.7 s): the child runs them.
- It hosts the reporters of its applies (reporter_host.py, one per connection on an abstract socket):
  Prefect is imported once, in this process, for both.
- The child dies with its parent, also on `kill -9`: `PR_SET_PDEATHSIG` (Linux) is set in the child
  before it runs the server when the main thread spawned it (the signal follows the spawning thread),
  and a child whose parent is already gone exits at once. In every case a watchdog thread in the
  child watches a pipe from the parent: end of file means the parent is gone (kill -9 included).
- Unless the apply ended normally: `linger` sends `L` on that pipe; the child's main thread turns the
  death signal off (SIGUSR1), and the child exits by itself once its reporters have recorded what
  they were sent (at most 300 s). A lock file keeps one server per database: the next server of the
  project waits for a lingering one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TemporaryServer", "adopt", "discard_unadopted", "for_project", "prestart", "running", "start",
           "stop_all", "template_path"]


@dataclass
class TemporaryServer:
    home: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _pipe_w: int
    fresh: bool = False  # it migrates a new database and no migrated copy is cached yet
    made_folder: bool = False  # it created the project's `.backfill/` (a first apply)
    _ready: bool = field(default=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def reporter_socket(self) -> str:
        """The abstract socket on which the server's process takes an apply's stream (reporting.py)."""
        return _socket_name(self.port)

    def url(self, timeout: float = 180.0) -> str:
        """Its API URL, once it answers (raises RuntimeError with its log's tail if it never does)."""
        if self._pipe_w >= 0 and not self._ready:
            with contextlib.suppress(OSError):
                os.write(self._pipe_w, b"G")  # a deferred server boots now
        deadline = time.monotonic() + timeout
        while not self._ready:
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    self._ready = response.status == 200
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                    raise RuntimeError(f"the temporary Prefect server did not start (log {self.log_path}):\n"
                                       f"{tail}") from None
                time.sleep(0.1)
        return self.api_url

    def linger(self) -> None:
        """Let it finish recording what its reporters were sent, then exit by itself (at most 300 s);
        this process no longer waits for it, nor stops it."""
        with _LOCK:
            if _SERVERS.get(self.home) is self:
                del _SERVERS[self.home]
        if self._pipe_w < 0 or self.process.poll() is not None:
            return
        flag = self.home / "lingering"
        flag.unlink(missing_ok=True)
        try:
            os.write(self._pipe_w, b"L")
        except OSError:
            return
        deadline = time.monotonic() + 5
        while not flag.exists() and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)  # it turns its death signal off before we may go (within ~1 ms)
        with contextlib.suppress(OSError):
            os.close(self._pipe_w)
        self._pipe_w = -1

    def stop(self) -> None:
        """Stop it (again: nothing; its pipe's descriptor is closed once, never a number reused since)."""
        with _LOCK:
            if _SERVERS.get(self.home) is self:
                del _SERVERS[self.home]
        if self._pipe_w >= 0:
            with contextlib.suppress(OSError):
                os.close(self._pipe_w)
            self._pipe_w = -1
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# A temporary server only records the runs of its apply: no scheduling, automations, cleanup loops or
# event history competing with the apply for the CPU (the task run recorder stays on: it records the
# task runs of the groups from their events).
_ONLY_RECORDERS = {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in (
    "CANCELLATION_CLEANUP", "DB_VACUUM", "EVENT_LOGGER", "FOREMAN", "LATE_RUNS", "SCHEDULER", "PAUSE_EXPIRATIONS",
    "REPOSSESSOR", "CLEANUP_RECONCILER", "TRIGGERS", "EVENT_PERSISTER")} | {"PREFECT_LOGGING_LEVEL": "WARNING"}

_SERVERS: dict[Path, TemporaryServer] = {}
_LOCK = threading.RLock()


def _socket_name(port: int) -> str:
    return f"backfill-prefect-reporter-{os.getpid()}-{port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(home: Path, defer: bool = False) -> TemporaryServer:
    """Spawn (or reuse) this process's temporary server whose Prefect home is `home`; does not wait.
    `defer`: it takes the streams of its applies at once but imports Prefect and serves only once the
    apply ran (`linger`) or its URL is asked for: nothing of Prefect's shares the CPU with the run."""
    home = home.resolve()
    with _LOCK:
        server = _SERVERS.get(home)
        if server is not None and server.process.poll() is None:
            return server
        for other in [h for h in _SERVERS if h != home]:  # one at a time: a process applies one project at a time
            with contextlib.suppress(Exception):
                _SERVERS.pop(other).stop()
        made_folder = not home.parent.exists()
        home.mkdir(parents=True, exist_ok=True)
        fresh = _seed_database(home)
        port = _free_port()
        # the death signal follows the spawning thread: only the main thread lives as long as we do
        thread = "main" if threading.current_thread() is threading.main_thread() else "other"
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "0",
               "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", **_ONLY_RECORDERS}
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"  # for the reporters it hosts
        log_path = home / "server.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "backfill.run.serverchild", str(os.getpid()), str(read_fd), thread,
                 _socket_name(port), "later" if defer else "now", "--factory", "prefect.server.api.server:create_app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(read_fd,), cwd=str(home))
        os.close(read_fd)
        server = TemporaryServer(home, port, process, log_path, write_fd, fresh=fresh, made_folder=made_folder)
        _SERVERS[home] = server
        return server


def template_path() -> Path:
    """Where a migrated, empty Prefect database of this Prefect version is cached."""
    from importlib.metadata import version

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "backfill" / f"prefect-{version('prefect')}-sqlite.db"


def _seed_database(home: Path) -> bool:
    """Give a new home the cached migrated database; True when there is none to give (it migrates)."""
    database = home / "prefect.db"
    if database.exists():
        return False
    template = template_path()
    if not template.is_file():
        return True
    partial = home / f"prefect.db.{os.getpid()}.partial"
    try:
        shutil.copyfile(template, partial)
        os.replace(partial, database)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()
        return True
    return False


_PRESTARTED: dict[Path, TemporaryServer] = {}


def prestart(root: Path) -> None:
    """`backfill apply` starts the server of the project at `root` before it imports anything else;
    `apply_project` adopts it (`adopt`), and `discard_unadopted` removes one it never adopted."""
    if not os.environ.get("PREFECT_API_URL") and (root / "project.yaml").is_file():
        _PRESTARTED[root.resolve()] = start(root / ".backfill" / "prefect", defer=True)


def adopt(root: Path) -> TemporaryServer | None:
    return _PRESTARTED.pop(root.resolve(), None)


def discard_unadopted() -> None:
    """Stop a prestarted server no apply took (the command ended before: bad usage, say), and remove
    the `.backfill/` it made."""
    for server in _PRESTARTED.values():
        server.stop()
        if server.made_folder:
            shutil.rmtree(server.home.parent, ignore_errors=True)
    _PRESTARTED.clear()


def for_project(root: Path) -> TemporaryServer | None:
    """The temporary server for a project (spawned now, in the background), or None when
    PREFECT_API_URL names a server."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    return start(root / ".backfill" / "prefect", defer=True)


def running() -> list[TemporaryServer]:
    return [s for s in _SERVERS.values() if s.process.poll() is None]


def stop_all() -> None:
    with _LOCK:
        servers = list(_SERVERS.values())
    for server in servers:
        with contextlib.suppress(Exception):  # best effort at exit
            server.stop()


atexit.register(stop_all)
