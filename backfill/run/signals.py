"""SIGTERM and SIGINT during `apply`, `rerun` and `resume`: stop cleanly and say what to run next.

The first signal stops the runs under way: their running SQL is interrupted through the instances'
cancel tokens (the path `backfill kill` uses), every instance not finished ends `killed` with the
reason, then the command unwinds normally: the ledger writes are flushed, the lock released, and
the command ends with one `error:` line saying what to run next (exit status 1). A signal that
comes while no run is under way unwinds at once. A second signal exits at once; the next `apply`
breaks the dead process's lock and settles its instances from the warehouse's write markers.

The flows run off the main thread (see `apply.run_instances`), so these handlers, not Prefect's, get
the signals.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import UserError

__all__ = ["STOP", "Stopped", "stop_on_signals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stoppable(Protocol):
    def stop(self, reason: str) -> None: ...


class Stopped(UserError):
    """The command was told to stop by a signal; its message says what to run next."""


@dataclass
class _StopRequest:
    """What the signal handlers share with the runs of this process."""

    command: str = "apply"
    reason: str | None = None  # e.g. "killed: apply received SIGTERM", once a signal came
    signal_name: str = ""
    signals: int = 0
    runs: list[_Stoppable] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, run: _Stoppable) -> None:
        with self.lock:
            self.runs.append(run)
        if self.reason:  # a signal came while it was being set up
            run.stop(self.reason)

    def detach(self, run: _Stoppable) -> None:
        with self.lock:
            if run in self.runs:
                self.runs.remove(run)

    def stop_runs(self) -> None:
        with self.lock:
            runs = list(self.runs)
        for run in runs:
            run.stop(self.reason or "killed")

    def check(self, next_step: str) -> None:
        """Raise `Stopped` if a signal came (call between steps of the command)."""
        if self.reason:
            raise Stopped(f"{self.command} stopped by {self.signal_name}; its unfinished instances are "
                          f"killed; {next_step}")


STOP = _StopRequest()


@contextmanager
def stop_on_signals(command: str, next_step: str) -> Iterator[_StopRequest]:
    """Handle SIGTERM and SIGINT while the block runs (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    STOP.command, STOP.reason, STOP.signal_name, STOP.signals, STOP.runs = command, None, "", 0, []
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in SIGNALS}

    def handler(signum: int, _frame: object) -> None:
        STOP.signals += 1
        name = signal.Signals(signum).name
        if STOP.signals > 1:
            os.write(2, f"error: {command} stopped at once by a second {name}; {next_step} "
                        "(it recovers what was running)\n".encode())
            os._exit(1)
        STOP.signal_name = name
        STOP.reason = f"killed: {command} received {name}"
        if STOP.runs:  # the runs end their instances; the command then unwinds by itself
            threading.Thread(target=STOP.stop_runs, name="stop-runs", daemon=True).start()
        else:
            STOP.check(next_step)

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield STOP
    finally:
        for num, h in previous.items():
            signal.signal(num, h if h is not None else signal.SIG_DFL)


def run_in_thread(fn: Callable[[], Any], stopped: Callable[[], bool], grace: float = 10.0) -> Any:
    """Call `fn` in a helper thread and wait for it, so signals reach the main thread's handlers.

    Once `stopped()` is true, wait at most `grace` seconds more; then give up on it (None)."""
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = exc

    worker = threading.Thread(target=body, name="backfill-flow", daemon=True)
    worker.start()
    waited = 0.0
    while worker.is_alive():
        worker.join(0.1)
        if stopped():
            waited += 0.1
            if waited >= grace:
                return None
    if "error" in out:
        raise out["error"]
    return out.get("value")
