"""Batched ledger writes: instance status changes reach the ledger within ~50 ms, in few transactions.

Only ever behind the warehouse: a success is queued after the partition committed, so the ledger never
says success for data that is not there. A crash can lose the last batch; `apply` reconciles it from
the warehouse's own write markers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..state.ledger import Ledger

__all__ = ["LedgerWriter"]


class LedgerWriter:
    def __init__(self, ledger: Ledger, interval: float = 0.05, max_batch: int = 500):
        self.ledger = ledger
        self.interval = interval
        self.max_batch = max_batch
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="ledger-writer", daemon=True)
        self._thread.start()

    def put(self, instance_id: str, values: Mapping[str, Any] | None = None, attempt: Mapping[str, Any] | None = None,
            partitions: Sequence[tuple[str | None, ...]] | None = None) -> None:
        if self._error is not None:
            raise RuntimeError(f"the ledger cannot be written: {self._error}") from self._error
        self._queue.put({"id": instance_id, "values": values, "attempt": attempt, "partitions": partitions})

    def _loop(self) -> None:
        stop = False
        while not stop:
            batch: list[Mapping[str, Any]] = []
            item = self._queue.get()
            if item is None:
                stop = True
            else:
                batch.append(item)
            try:
                while not stop and len(batch) < self.max_batch:
                    nxt = self._queue.get(timeout=self.interval)
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
            except queue.Empty:
                pass
            if batch:
                try:
                    self.ledger.apply_updates(batch)
                except BaseException as exc:  # noqa: BLE001 - reported on the next put/close
                    self._error = exc

    def close(self) -> None:
        """Write everything queued, then stop."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"the ledger cannot be written: {self._error}") from self._error
