"""The reporter process (`python -m backfill.run.reporter_child`): plays an apply's stream (reporting.py)
as real Prefect runs.

stdin: JSON lines from the applying process. stdout: JSON lines back (`{"name", "link"}` once a flow
run exists, `{"error"}` when Prefect cannot record something). Each backfill is one flow run named after
it, tagged `project:NAME` and `backfill:NAME`; each group is one task run named after its dates; every
instance's start and end is a log line of its group's task run, stamped with the time it happened; a
progress artifact per group follows the ended instances and a table artifact lists them at the end.
A group with an instance that did not succeed ends Failed with the counts, and so does the flow run.
If the apply's stream ends in the middle of a backfill (the applying process was killed), that flow
run ends Failed saying so, instead of staying Running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
import urllib.request
from typing import Any

from .observe import artifact_key

_EOF: dict[str, Any] = {"op": "eof"}
_INBOX: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
_GROUPS: dict[tuple[str, int], queue.SimpleQueue[dict[str, Any]]] = {}
_LOGGER = logging.getLogger("backfill.instances")
_OUT = threading.Lock()
GONE = "the applying process ended before this backfill finished (killed?); `backfill apply` resumes it"


def tell(message: dict[str, Any]) -> None:
    with _OUT, contextlib.suppress(OSError, ValueError):  # the apply may be gone (killed): play on
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def _read_stdin() -> None:
    for raw in sys.stdin.buffer:
        try:
            _INBOX.put(json.loads(raw))
        except ValueError:
            continue
    _INBOX.put(_EOF)


def _wait_for_api(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Prefect API at {url} did not answer within {seconds:g} s")
        time.sleep(0.1)


def _save_template() -> None:
    """Keep a copy of the temporary server's freshly migrated database (tempserver.py reuses it)."""
    target = os.environ.get("BACKFILL_PREFECT_TEMPLATE")
    home = os.environ.get("BACKFILL_PREFECT_HOME")
    if not target or not home or os.path.exists(target):
        return
    import sqlite3

    partial = f"{target}.{os.getpid()}.partial"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with sqlite3.connect(os.path.join(home, "prefect.db")) as source, sqlite3.connect(partial) as copy:
            source.backup(copy)
        os.replace(partial, target)
    except (OSError, sqlite3.Error):
        if os.path.exists(partial):
            os.unlink(partial)


def _group_body(key: str, group: int, label: str, total: int) -> Any:
    from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
    from prefect.context import get_run_context
    from prefect.states import Failed

    ctx: Any = get_run_context()
    extra = {"flow_run_id": str(ctx.task_run.flow_run_id), "task_run_id": ctx.task_run.id}
    inbox = _GROUPS[(key, group)]
    name = artifact_key(label.split(" group ")[0], "group", group)
    progress_id: Any = None
    with contextlib.suppress(Exception):  # artifacts are a courtesy; the ledger is the record
        progress_id = create_progress_artifact(0.0, key=f"{name}-progress", description=label)
    ended, shown, last = 0, 0.0, 0.0
    lines = _Lines(extra)
    while True:
        try:
            m = inbox.get(timeout=1.0)
        except queue.Empty:  # live: what waited shows now
            lines.flush()
            continue
        if m["op"] == "log":
            lines.add(m)
            ended += 1 if m.get("ended") else 0
            now = round(100.0 * ended / max(1, total), 1)
            if progress_id is not None and now != shown and time.monotonic() - last > 0.5:
                _quietly(update_progress_artifact, progress_id, now)
                shown, last = now, time.monotonic()
            continue
        lines.flush()
        if progress_id is not None:
            _quietly(update_progress_artifact, progress_id, 100.0)
        if m["op"] != "group_end":
            return Failed(message=f"{label}: {GONE}")
        _quietly(create_table_artifact, m["table"], key=name, description=label)
        if not m["ok"]:
            return Failed(message=f"{label}: {m['message']}")
        return {"instances": total}


class _Lines:
    """A group's log lines, sent as one Prefect log per second of run time (each line stamped with the
    time it happened); an error is a log of its own at ERROR level. Thousands of instances make
    thousands of lines: one API log each would keep Prefect's server busy for seconds."""

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra
        self.pending: list[dict[str, Any]] = []

    def add(self, m: dict[str, Any]) -> None:
        if self.pending and (float(m["t"]) - float(self.pending[0]["t"]) > 1.0 or len(self.pending) >= 500):
            self.flush()
        if m["level"] != "INFO":
            self.flush()
            self._emit(m["level"], m["msg"], float(m["t"]))
            return
        self.pending.append(m)

    def flush(self) -> None:
        if self.pending:
            text = "\n".join(f"{_clock(float(m['t']))} {m['msg']}" for m in self.pending)
            self._emit("INFO", text, float(self.pending[0]["t"]))
            self.pending = []

    def _emit(self, level: str, text: str, at: float) -> None:
        record = _LOGGER.makeRecord(_LOGGER.name, getattr(logging, level), "backfill", 0, text, (), None,
                                    extra=self.extra)
        record.created = at
        _LOGGER.handle(record)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(Exception):  # artifacts are a courtesy; the ledger is the record
        fn(*args, **kwargs)


def play(begin: dict[str, Any]) -> dict[str, Any]:
    """One backfill as one flow run; returns the message that ended it (`end`, or EOF)."""
    from prefect import flow, tags, task
    from prefect.cache_policies import NO_CACHE
    from prefect.context import get_run_context
    from prefect.settings import temporary_settings
    from prefect.states import Completed, Failed
    from prefect.task_runners import ThreadPoolTaskRunner

    from .flow import flow_run_link

    key, name = str(begin["key"]), str(begin["name"])
    groups = {int(g): v for g, v in begin["groups"].items()}
    for g in groups:
        _GROUPS[(key, g)] = queue.SimpleQueue()
    ending: dict[str, Any] = {}

    @task(name="backfill-group", retries=0, persist_result=False, cache_policy=NO_CACHE)
    def group_task(group: int) -> Any:
        return _group_body(key, group, groups[group]["label"], int(groups[group]["total"]))

    runner: Any = ThreadPoolTaskRunner(max_workers=max(1, len(groups)))

    @flow(name="backfill", flow_run_name=name, task_runner=runner, persist_result=False,
          validate_parameters=False, log_prints=False)
    def backfill_flow() -> Any:
        ctx: Any = get_run_context()
        tell({"name": name, "link": flow_run_link(ctx.flow_run.id) or ""})
        futures = [group_task.with_options(task_run_name=v["label"]).submit(g) for g, v in groups.items()]
        open_groups = set(groups)
        while True:
            m = _INBOX.get()
            if m["op"] in ("log", "group_end") and (m.get("key"), int(m.get("group", -1))) in _GROUPS:
                _GROUPS[(key, int(m["group"]))].put(m)
                if m["op"] == "group_end":
                    open_groups.discard(int(m["group"]))
                continue
            if m["op"] in ("end", "eof"):
                ending.update(m)
                break
        for g in open_groups:
            _GROUPS[(key, g)].put(_EOF)
        for f in futures:
            f.wait()
        if m["op"] == "eof":
            return Failed(message=GONE)
        return Completed(message=m["message"]) if m["ok"] else Failed(message=m["message"])

    with tags(*begin["tags"]), temporary_settings(updates={"flows.heartbeat_frequency": None}):
        backfill_flow(return_state=True)
    for g in groups:
        _GROUPS.pop((key, g), None)
    return ending


def main() -> int:
    threading.Thread(target=_read_stdin, name="stdin", daemon=True).start()
    try:
        from prefect.logging.handlers import APILogHandler

        _LOGGER.addHandler(APILogHandler())
        _LOGGER.setLevel(logging.INFO)
        _LOGGER.propagate = False
        _wait_for_api(os.environ["PREFECT_API_URL"], float(os.environ.get("BACKFILL_PREFECT_WAIT", "180")))
        _save_template()
    except Exception as exc:  # noqa: BLE001 - said once to the apply, which warns
        tell({"error": f"{type(exc).__name__}: {exc}"})
        while _INBOX.get() is not _EOF:  # drain: the apply never blocks on a full pipe
            pass
        return 0
    while True:
        m = _INBOX.get()
        if m is _EOF or m["op"] == "eof":
            break
        if m["op"] != "begin":
            continue
        try:
            if play(m).get("op") == "eof":
                break
        except Exception as exc:  # noqa: BLE001
            tell({"error": f"{m.get('name')}: {type(exc).__name__}: {exc}"})
    _drain()
    return 0


def _drain() -> None:
    """Send what Prefect's log and event workers still hold (task run states travel as events)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort at exit
            worker.drain_all(timeout=30)


if __name__ == "__main__":
    code = main()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os._exit(code)  # Prefect leaves service threads behind: do not wait for them
