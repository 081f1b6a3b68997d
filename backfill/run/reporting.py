"""What this apply shows in Prefect, written by a reporter process so that Prefect never sits on the
path of the instances.

Importing Prefect costs 1.5 s of CPU, its flow engine and log threads take the GIL from the
scheduler, and a temporary server takes seconds to boot. So the applying process never imports
Prefect: it streams the run as JSON lines to a reporter (`reporter_child.py`) from the moment the apply
starts: each backfill begins, every instance starts and ends, each group ends, the backfill ends. The
reporter lives in the temporary server's process (which imports Prefect anyway: once for both), or is
a process of its own for a standing server. It waits for the server, and plays the stream as real
Prefect runs: one flow run per backfill, a task run per group, the instances' logs with their own
timestamps, progress and table artifacts, Completed or Failed with counts. The instances start at
once, on their core; at the end the apply waits until the reporter has recorded everything.

The ledger stays the record. A Prefect that cannot be reached never stops a backfill: the apply ends
with one `warning:` line saying what Prefect did not record.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from ..state.ledger import InstanceRow
from . import ownreporter
from .observe import group_label, group_message
from .reportstream import InstanceEvent, encode_stream
from .scheduler import BAD, BackfillRun
from .tempserver import TemporaryServer, template_path

__all__ = ["Reporter", "close_reporter", "discard_prefect", "start_reporter"]


class _Link(abc.ABC):
    """Where the stream goes: `open()` -> (lines out, lines back); `finish(timeout)` -> exit status."""

    log = "the Prefect server's log"

    @abc.abstractmethod
    def open(self) -> tuple[IO[bytes], IO[bytes]]:
        """Connect (in the reporter's writer thread, so it never holds up the apply)."""

    def finish(self, timeout: float) -> int:
        return 0

    @abc.abstractmethod
    def abort(self) -> None:
        """Give up on the reporter at once."""


class _OwnProcess(_Link):
    """A reporter process of its own (a standing server): the stream on its stdin."""

    def __init__(self, root: Path) -> None:
        self.log = str(ownreporter.log_path(root))
        self.process = ownreporter.take(root) or ownreporter.spawn(root)  # prestarted by the CLI, or now

    def open(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout

    def finish(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()


class _ServerSocket(_Link):
    """The temporary server's process, which hosts the reporters of its applies (tempserver.py)."""

    def __init__(self, name: str, hello: dict[str, str], log: str) -> None:
        self.name, self.hello, self.log = name, hello, log
        self.sock: socket.socket | None = None
        self.aborted = threading.Event()

    def open(self) -> tuple[IO[bytes], IO[bytes]]:
        deadline = time.monotonic() + 60
        while True:  # the server's process binds the socket first thing; it may not have yet
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect("\0" + self.name)
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline or self.aborted.is_set():
                    raise
                time.sleep(0.05)
        self.sock = sock
        out, back = sock.makefile("wb"), sock.makefile("rb")
        out.write((json.dumps({"op": "hello", **self.hello}) + "\n").encode())
        return out, back

    def abort(self) -> None:
        self.aborted.set()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()


class Reporter:
    """The apply's end of one reporter: `begin`, `observer`, `group_end`, `end`, `close`."""

    def __init__(self, link: _Link, say: Callable[[str], None] | None, standing: bool) -> None:
        self.link = link
        self.say = say
        self.standing = standing
        self.begun = False
        self.done = False  # the reporter said it recorded everything
        self.errors: list[str] = []
        # events, and the flags of those that must be on their way before the apply goes on (`_flushed`)
        self._outbox: collections.deque[dict[str, Any] | InstanceEvent | threading.Event] = collections.deque()
        self._closed = threading.Event()
        self._nudge = threading.Event()  # wakes the writer before its 0.1 s turn
        self._writer = threading.Thread(target=self._write, name="prefect-reporter-in", daemon=True)
        self._reader: threading.Thread | None = None
        self._writer.start()

    # ------------------------------------------------------------------ the stream
    def _send(self, message: dict[str, Any] | InstanceEvent) -> None:
        if not self._closed.is_set():
            self._outbox.append(message)

    def _flushed(self, message: dict[str, Any], wait: float = 0.5) -> None:
        """Send `message` and wait (at most `wait` s) until it is in the reporter's pipe: a backfill's start
        is there before its first instance runs (a `kill -9` then still leaves its flow run, Failed)."""
        if self._closed.is_set():
            return
        written = threading.Event()
        self._outbox.extend((message, written))
        self._nudge.set()
        written.wait(wait)

    def _write(self) -> None:  # an unbounded queue: a reporter still booting never slows an instance
        try:
            pipe, back = self.link.open()
        except OSError as exc:
            self.errors.append(f"the Prefect reporter could not be reached: {exc}")
            return
        self._reader = threading.Thread(target=self._read, args=(back,), name="prefect-reporter-out", daemon=True)
        self._reader.start()
        try:
            closing = False
            while not closing:  # every 0.1 s, not at every event (thousands come each second), or nudged
                self._nudge.wait(0.1)
                self._nudge.clear()
                closing = self._closed.is_set()
                items = [self._outbox.popleft() for _ in range(len(self._outbox))]
                lines = [i for i in items if not isinstance(i, threading.Event)]
                if lines:
                    pipe.write(encode_stream(lines))
                    pipe.flush()
                for flag in (i for i in items if isinstance(i, threading.Event)):
                    flag.set()
        except (OSError, ValueError):
            pass  # the reporter died: said at close
        finally:
            with contextlib.suppress(OSError, ValueError):
                pipe.close()
            if isinstance(self.link, _ServerSocket) and self.link.sock is not None:
                with contextlib.suppress(OSError):
                    self.link.sock.shutdown(socket.SHUT_WR)  # the end of the stream, answers still to come

    def _read(self, back: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in back:
                with contextlib.suppress(ValueError):
                    message = json.loads(raw)
                    if "done" in message:
                        self.done = True
                    elif "error" in message:
                        self.errors.append(str(message["error"]))
                    elif "link" in message and message["link"] and self.standing and self.say:
                        self.say(f"note: Prefect flow run of {message['name']}: {message['link']}")

    # ------------------------------------------------------------------ what the apply reports
    def begin(self, run: BackfillRun, project: str) -> None:
        groups = {str(g): {"label": group_label(run, g), "total": len(run.groups[g])} for g in sorted(run.groups)}
        self.begun = True
        self._flushed({"op": "begin", "key": run.run_id, "name": run.name,
                       "tags": [f"project:{project}", f"backfill:{run.name}"], "groups": groups, "t": time.time()})

    def observer(self, run: BackfillRun) -> Callable[[InstanceRow, str, Mapping[str, object]], None]:
        key = run.run_id

        def observe(row: InstanceRow, status: str, values: Mapping[str, object]) -> None:
            if status == "running":
                level, text = "INFO", f"{row.id} started ({run.where})"
            elif status in ("success", "dry_run"):
                level, text = "INFO", f"{row.id} {status}: {values.get('rows') or 0} row(s)"
            elif status in BAD:
                level, text = "ERROR", f"{row.id} {status}: {values.get('error') or ''}"
            else:
                return
            self._send(InstanceEvent(key, row.group, level, text, status != "running", time.time()))
        return observe

    def group_end(self, run: BackfillRun, group: int) -> None:
        ok, message = group_message(run, [group])
        rows = [{"instance": j.row.id, "table": j.row.table, "ds": j.row.ds, "status": j.status}
                for j in (run.jobs[i] for i in run.groups[group])]
        self._send({"op": "group_end", "key": run.run_id, "group": group, "ok": ok, "message": message,
                    "table": rows, "t": time.time()})

    def end(self, run: BackfillRun) -> None:
        ok, message = group_message(run, sorted(run.groups))
        self._send({"op": "end", "key": run.run_id, "ok": ok, "message": message, "t": time.time()})
        self._nudge.set()

    def close(self, timeout: float = 300.0) -> list[str]:
        """Wait (at most `timeout` seconds) until Prefect has recorded everything sent; the problems."""
        if self._closed.is_set():
            return self.errors
        self._closed.set()
        self._nudge.set()
        if not self.begun:  # nothing ran: nothing to record, no reason to wait for Prefect
            self.link.abort()
            return []
        if not self.standing:  # the temporary server records it after we go (TemporaryServer.linger)
            self._writer.join(min(timeout, 30.0))
            return self.errors
        deadline = time.monotonic() + timeout
        self._writer.join(timeout)
        noted = False
        while self._reader is not None and self._reader.is_alive() and time.monotonic() < deadline:
            self._reader.join(min(3.0, max(0.0, deadline - time.monotonic())))
            if self._reader.is_alive() and not noted and self.say:
                self.say("note: waiting for Prefect to record this run (the ledger already has it)")
                noted = True
        try:
            code = self.link.finish(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = 0
        if (self._reader is not None and self._reader.is_alive()) or time.monotonic() >= deadline:
            self.link.abort()
            self.errors.append(f"Prefect did not record this run within {timeout:g} s")
        elif (code != 0 or not self.done) and not self.errors:
            self.errors.append(f"the Prefect reporter ended early (exit status {code}); see {self.link.log}")
        return self.errors


def start_reporter(root: Path, server: TemporaryServer | None,
                   say: Callable[[str], None] | None = None) -> Reporter | None:
    """A reporter for an apply of the project at `root`: hosted by `server` (this process's temporary
    server), or a process of its own for the standing server PREFECT_API_URL names; None without either."""
    wait = os.environ.get("BACKFILL_PREFECT_WAIT")
    if server is not None:
        hello = {"api": server.api_url, "wait": wait or "180", "home": str(server.home)}
        if server.fresh:
            hello["template"] = str(template_path())
        return Reporter(_ServerSocket(server.reporter_socket, hello, str(server.log_path)), say, standing=False)
    if not os.environ.get("PREFECT_API_URL"):
        return None
    return Reporter(_OwnProcess(root), say, standing=True)


def close_reporter(reporter: Reporter, say: Callable[[str], None] | None, timeout: float = 300.0,
                   server: TemporaryServer | None = None) -> None:
    """The end of an apply's reporting. A standing server: wait until Prefect recorded everything (one
    `warning:` line if it did not). The temporary server (no UI, nobody watching it live): hand it the
    rest and let it finish after we go, instead of waiting seconds for its boot."""
    problems = reporter.close(timeout)
    if server is not None:
        server.linger()
    if problems and say:
        say(f"warning: Prefect did not record this run completely: {problems[0]} "
            "(the ledger has the whole record: `backfill instances`)")


def discard_prefect(root: Path, reporter: Reporter | None, server: TemporaryServer | None, fresh: bool) -> None:
    """Stop what an apply started for Prefect before it ran anything; on a first apply, remove it."""
    if reporter is not None:
        reporter.close()
    if server is not None:
        server.stop()
    if fresh:
        shutil.rmtree(root / ".backfill", ignore_errors=True)
