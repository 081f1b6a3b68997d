"""What this apply shows in Prefect, written by a reporter process so that Prefect never sits on the
path of the instances.

Importing Prefect costs this process 1.5 s of CPU, its flow engine and log threads take the GIL from
the scheduler, and a temporary server takes seconds to boot. So the applying process never imports
Prefect: it starts a reporter process (`reporter_child.py`) when the apply starts, and streams it the
run as JSON lines on a pipe (each backfill begins, every instance's start and end, each group's end,
the backfill's end). The reporter imports Prefect on the other core, waits for the server, and plays
the stream as real Prefect runs: one flow run per backfill, a task run per group, the instances' logs
with their own timestamps, progress and table artifacts, and Completed or Failed states with counts.
The instances start at once; at the end the apply waits until the reporter has recorded everything.

The ledger stays the record. A Prefect that cannot be reached never stops a backfill: the apply ends
with one `warning:` line saying what Prefect did not record.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..state.ledger import InstanceRow
from .observe import group_label, group_message
from .scheduler import BAD, BackfillRun
from .tempserver import TemporaryServer, template_path

__all__ = ["Reporter", "close_reporter", "start_reporter"]

_CLOSE = object()


class Reporter:
    """The parent's end of one reporter process: `begin`, `observer`, `group_end`, `end`, `close`."""

    def __init__(self, api_url: str, log_path: Path, say: Callable[[str], None] | None, standing: bool,
                 env: Mapping[str, str]) -> None:
        self.say = say
        self.standing = standing
        self.begun = False
        self.links: dict[str, str] = {}
        self.errors: list[str] = []
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false", **env}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            # its own session: a Ctrl-C in the terminal reaches the apply, which then reports the end
            self.process = subprocess.Popen([sys.executable, "-m", "backfill.run.reporter_child"], env=env,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            start_new_session=True)
        self._writer = threading.Thread(target=self._write, name="prefect-reporter-in", daemon=True)
        self._reader = threading.Thread(target=self._read, name="prefect-reporter-out", daemon=True)
        self._writer.start()
        self._reader.start()

    # ------------------------------------------------------------------ the stream
    def _send(self, message: dict[str, Any]) -> None:
        if not self._closed:
            self._outbox.put(message)

    def _write(self) -> None:  # an unbounded queue: a reporter still booting never slows an instance
        assert self.process.stdin is not None
        pipe = self.process.stdin
        try:
            while True:
                item = self._outbox.get()
                if item is _CLOSE:
                    break
                lines = [item]
                with contextlib.suppress(queue.Empty):
                    while len(lines) < 500:
                        more = self._outbox.get_nowait()
                        if more is _CLOSE:
                            self._outbox.put(_CLOSE)
                            break
                        lines.append(more)
                pipe.write("".join(json.dumps(m, separators=(",", ":")) + "\n" for m in lines).encode())
                pipe.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the reporter died: its exit status says so at close
        finally:
            with contextlib.suppress(OSError, ValueError):
                pipe.close()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with contextlib.suppress(ValueError):
                message = json.loads(raw)
                if "error" in message:
                    self.errors.append(str(message["error"]))
                elif "link" in message:
                    self.links[str(message["name"])] = str(message["link"])
                    if self.standing and self.say and message["link"]:
                        self.say(f"note: Prefect flow run of {message['name']}: {message['link']}")

    # ------------------------------------------------------------------ what the apply reports
    def begin(self, run: BackfillRun, project: str) -> None:
        groups = sorted(run.groups)
        self.begun = True
        self._send({"op": "begin", "key": run.run_id, "name": run.name,
                    "tags": [f"project:{project}", f"backfill:{run.name}"],
                    "groups": {str(g): {"label": group_label(run, g), "total": len(run.groups[g])} for g in groups},
                    "t": time.time()})

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
            self._send({"op": "log", "key": key, "group": row.group, "level": level, "msg": text,
                        "ended": status != "running", "t": time.time()})
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

    def close(self, timeout: float = 300.0) -> list[str]:
        """Wait (at most `timeout` seconds) until Prefect has recorded everything sent; the problems."""
        if self._closed:
            return self.errors
        self._outbox.put(_CLOSE)
        self._closed = True
        if not self.begun:  # nothing ran: nothing to record, no reason to wait for Prefect
            self.kill()
            self.process.wait()
            return []
        self._writer.join(timeout)
        try:
            try:
                code = self.process.wait(min(3.0, timeout))
            except subprocess.TimeoutExpired:
                if self.say and timeout > 3.0:
                    self.say("note: waiting for Prefect to record this run (the ledger already has it)")
                code = self.process.wait(max(0.0, timeout - 3.0))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.errors.append(f"Prefect did not record this run within {timeout:g} s")
            code = 0
        self._reader.join(5)
        if code != 0 and not self.errors:
            self.errors.append(f"the Prefect reporter exited with status {code}")
        return self.errors

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()


def start_reporter(root: Path, server: TemporaryServer | None,
                   say: Callable[[str], None] | None = None) -> Reporter | None:
    """A reporter process for an apply of the project at `root`: to `server` (this process's temporary
    server) or to the standing server PREFECT_API_URL names; None when there is neither."""
    if server is not None:
        env = {"BACKFILL_PREFECT_WAIT": os.environ.get("BACKFILL_PREFECT_WAIT", "180"),
               "BACKFILL_PREFECT_HOME": str(server.home)}
        if server.fresh:
            env["BACKFILL_PREFECT_TEMPLATE"] = str(template_path())
        return Reporter(server.api_url, server.home / "reporter.log", say, False, env)
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    wait = os.environ.get("BACKFILL_PREFECT_WAIT", "30")
    return Reporter(url, root / ".backfill" / "prefect-reporter.log", say, True, {"BACKFILL_PREFECT_WAIT": wait})


def close_reporter(reporter: Reporter, say: Callable[[str], None] | None, timeout: float = 300.0) -> None:
    """Wait for `reporter`; one `warning:` line if Prefect did not record everything."""
    problems = reporter.close(timeout)
    if problems and say:
        say(f"warning: Prefect did not record this run completely: {problems[0]} "
            "(the ledger has the whole record: `backfill instances`)")
