"""A live progress bar per group (done / failed / running), drawn with rich on a terminal."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..plan.planner import BackfillPlan


class LiveProgress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[int, Any] = {}
        self._counts: dict[int, list[int]] = {}
        self._group_of: dict[str, int] = {}
        self._lock = threading.Lock()

    def start_backfill(self, plan: BackfillPlan) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.stop()
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), transient=False)
        todo = [i for i in plan.instances if i.action != "done"]
        for g in sorted({i.group for i in todo}):
            n = sum(1 for i in todo if i.group == g)
            self._tasks[g] = self._progress.add_task(f"{plan.name} group {g}", total=n, detail="")
            self._counts[g] = [0, 0, 0]  # done, failed, running
        self._group_of = {i.id: i.group for i in todo}
        self._progress.start()

    def on_change(self, instance_id: str, before: str, after: str) -> None:
        if self._progress is None:
            return
        g = self._group_of.get(instance_id)
        if g is None:
            return
        with self._lock:
            c = self._counts[g]
            if before == "running":
                c[2] -= 1
            if after == "running":
                c[2] += 1
            elif after in ("success", "dry_run"):
                c[0] += 1
            elif after in ("failed", "paused", "blocked", "killed"):
                c[1] += 1
            self._progress.update(self._tasks[g], completed=c[0] + c[1],
                                  detail=f"done {c[0]} failed {c[1]} running {c[2]}")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
