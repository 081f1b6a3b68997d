"""The reporter: plays an apply's stream (reporting.py) as real Prefect runs.

It runs inside the temporary Prefect server's process (one stream per connection on the server's
socket, reporter_host.py: Prefect is imported there once, for both), or as its own process for a standing server
(`python -m backfill.run.reporter_child`, the stream on stdin). It only imports the standard library
until a stream arrives.

In: JSON lines from the applying process. Out: JSON lines back (`{"name", "link"}` once a flow run
exists, `{"error"}` when Prefect cannot record something). Each backfill is one flow run named after
it, tagged `project:NAME` and `backfill:NAME`; each group is one task run named after its dates; the
start and end of every instance are lines of its group's logs, stamped with the time they happened; a
progress artifact per group follows the ended instances and a table artifact lists them at the end.
A group with an instance that did not succeed ends Failed with the counts, and so does the flow run.
If the stream ends in the middle of a backfill (the applying process was killed), that flow run ends
Failed saying so, instead of staying Running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import IO, Any

from .reportstream import expand

__all__ = ["GONE", "artifact_key", "flow_run_link", "serve"]

GONE = "the applying process ended before this backfill finished (killed?); `backfill apply` resumes it"
_EOF: dict[str, Any] = {"op": "eof"}
_LOGGER = logging.getLogger("backfill.instances")
_SETUP = threading.Lock()


def artifact_key(*parts: object) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(str(p) for p in parts).lower()).strip("-")[:250]


def flow_run_link(flow_run_id: object) -> str | None:
    """The Prefect UI page of a flow run, when the server serves a UI."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


class _Stream:
    """One apply's stream: its messages in, its answers out, the queues of its groups."""

    def __init__(self, lines: Iterable[bytes], out: IO[str]) -> None:
        self.inbox: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.groups: dict[tuple[str, int], queue.SimpleQueue[dict[str, Any]]] = {}
        self.out = out
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(lines,), name="reporter-in", daemon=True).start()

    def _read(self, lines: Iterable[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in lines:
                with contextlib.suppress(ValueError):
                    for message in expand(json.loads(raw)):  # the instances' events come several to a line
                        self.inbox.put(message)
        self.inbox.put(_EOF)

    def tell(self, message: dict[str, Any]) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):  # the apply may be gone: play on
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()


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


def _save_template(target: str | None, home: str | None) -> None:
    """Keep a copy of the temporary server's freshly migrated database (tempserver.py reuses it)."""
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


def _group_body(inbox: queue.SimpleQueue[dict[str, Any]], group: int, label: str, total: int) -> Any:
    from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
    from prefect.context import get_run_context
    from prefect.states import Failed

    ctx: Any = get_run_context()
    lines = _Lines({"flow_run_id": str(ctx.task_run.flow_run_id), "task_run_id": ctx.task_run.id})
    name = artifact_key(label.split(" group ")[0], "group", group)
    progress_id: Any = None
    with contextlib.suppress(Exception):  # artifacts are a courtesy; the ledger is the record
        progress_id = create_progress_artifact(0.0, key=f"{name}-progress", description=label)
    ended, shown, last = 0, 0.0, 0.0
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


def play(stream: _Stream, begin: dict[str, Any]) -> dict[str, Any]:
    """One backfill as one flow run; returns the message that ended it (`end`, or EOF)."""
    from prefect import flow, tags, task
    from prefect.cache_policies import NO_CACHE
    from prefect.context import TagsContext, get_run_context
    from prefect.settings import temporary_settings
    from prefect.states import Completed, Failed
    from prefect.task_runners import ThreadPoolTaskRunner

    name = str(begin["name"])
    groups = {int(g): v for g, v in begin["groups"].items()}
    queues: dict[int, queue.SimpleQueue[dict[str, Any]]] = {g: queue.SimpleQueue() for g in groups}
    ending: dict[str, Any] = {}

    @task(name="backfill-group", retries=0, persist_result=False, cache_policy=NO_CACHE)
    def group_task(group: int) -> Any:
        return _group_body(queues[group], group, groups[group]["label"], int(groups[group]["total"]))

    runner: Any = ThreadPoolTaskRunner(max_workers=max(1, len(groups)))

    @flow(name="backfill", flow_run_name=name, task_runner=runner, persist_result=False,
          validate_parameters=False, log_prints=False)
    def backfill_flow() -> Any:
        ctx: Any = get_run_context()
        stream.tell({"name": name, "link": flow_run_link(ctx.flow_run.id) or ""})
        # the tags mark the flow run only: a tagged task run first asks Prefect for tag concurrency
        # slots, one API call that at times stalls for seconds
        with TagsContext(current_tags=set()):
            futures = [group_task.with_options(task_run_name=v["label"]).submit(g) for g, v in groups.items()]
        open_groups = set(groups)
        while True:
            m = stream.inbox.get()
            if m["op"] in ("log", "group_end") and int(m.get("group", -1)) in queues:
                queues[int(m["group"])].put(m)
                if m["op"] == "group_end":
                    open_groups.discard(int(m["group"]))
            elif m["op"] in ("end", "eof"):
                ending.update(m)
                break
        for g in open_groups:
            queues[g].put(_EOF)
        for f in futures:
            f.wait()
        if m["op"] == "eof":
            return Failed(message=GONE)
        return Completed(message=m["message"]) if m["ok"] else Failed(message=m["message"])

    with tags(*begin["tags"]), temporary_settings(updates={"flows.heartbeat_frequency": None}):
        backfill_flow(return_state=True)
    return ending


def serve(lines: Iterable[bytes], out: IO[str], settings: dict[str, str] | None = None,
          ready: Callable[[], object] | None = None) -> None:
    """Play one stream to the end. `settings` (else the first line, `{"op": "hello", ...}`): `api`,
    `wait` (seconds to wait for it), `home` and `template` (the temporary server's database and where
    to keep a copy of it)."""
    stream = _Stream(lines, out)
    if settings is None:
        hello = stream.inbox.get()
        settings = {k: str(v) for k, v in hello.items() if k != "op"} if hello.get("op") == "hello" else {}
    if ready is not None:  # the stream is read meanwhile: the apply never waits on a full socket
        ready()
    try:
        with _SETUP:
            from prefect.logging.handlers import APILogHandler

            if not any(isinstance(h, APILogHandler) for h in _LOGGER.handlers):
                _LOGGER.addHandler(APILogHandler())
                _LOGGER.setLevel(logging.INFO)
                _LOGGER.propagate = False
        _wait_for_api(settings.get("api") or os.environ["PREFECT_API_URL"], float(settings.get("wait") or 180))
        _save_template(settings.get("template"), settings.get("home"))
    except Exception as exc:  # noqa: BLE001 - said once to the apply, which warns
        stream.tell({"error": f"{type(exc).__name__}: {exc}"})
        while stream.inbox.get() is not _EOF:  # drain: the apply never blocks on a full pipe
            pass
        stream.tell({"done": True})
        return
    while True:
        m = stream.inbox.get()
        if m is _EOF:
            break
        if m.get("op") != "begin":
            continue
        try:
            if play(stream, m).get("op") == "eof":
                break
        except Exception as exc:  # noqa: BLE001
            stream.tell({"error": f"{m.get('name')}: {type(exc).__name__}: {exc}"})
    _drain()
    stream.tell({"done": True})


def _drain() -> None:
    """Send what Prefect's log and event workers still hold (task run states travel as events)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort
            worker.drain_all(timeout=30)


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout, {k: os.environ.get(f"BACKFILL_PREFECT_{k.upper()}", "")
                                         for k in ("wait", "home", "template")})
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os._exit(0)  # Prefect leaves service threads behind: do not wait for them
