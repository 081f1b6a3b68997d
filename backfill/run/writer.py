"""Batched ledger writes: instance status changes reach the ledger within ~50 ms, in few transactions.

Only ever behind the warehouse: a success is queued after the partition committed, so the ledger never
says success for data that is not there. A crash can lose the last batch; `apply` reconciles it from
the warehouse's own write markers.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import UserError
from ..state.faults import LedgerUnavailable
from ..state.ledger import Ledger

__all__ = ["LedgerWriter"]


class LedgerWriter:
    RETRIES = 3  # a batch is idempotent: after a lost connection it is written again on a fresh one

    def __init__(self, ledger: Ledger, interval: float = 0.05, max_batch: int = 500,
                 on_error: Callable[[BaseException], None] | None = None):
        self.ledger = ledger
        self.on_error = on_error  # told once, from the writer's thread, when the ledger cannot be written
        self.interval = interval
        self.max_batch = max_batch
        # appended to by the run's threads without waking anyone: the writer takes all of it every
        # `interval` (a hand-off per status change cost a thread wake-up and lock traffic each)
        self._queue: deque[Mapping[str, Any]] = deque()
        self._closing = threading.Event()
        self._error: BaseException | None = None
        self._attempts: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="ledger-writer", daemon=True)
        self._thread.start()

    def put(self, instance_id: str, values: Mapping[str, Any] | None = None, attempt: Mapping[str, Any] | None = None,
            partitions: Sequence[tuple[str | None, ...]] | None = None) -> None:
        if self._error is not None:  # the run is being stopped; close() reports the error
            return
        self._queue.append({"id": instance_id, "values": values, "attempt": attempt, "partitions": partitions})

    def _loop(self) -> None:
        stop = False
        while not stop:
            stop = self._closing.wait(self.interval)
            while self._queue and self._error is None:  # in order, at most max_batch a transaction
                take = min(len(self._queue), self.max_batch)
                self._write([self._queue.popleft() for _ in range(take)])
                # one transaction an interval: what arrived during that write waits for the next turn
                # (writing it at once took two to four more small transactions a turn); a backlog of a
                # whole batch goes on at once, and closing writes everything
                if not stop and len(self._queue) < self.max_batch:
                    break

    def _write(self, batch: list[Mapping[str, Any]]) -> None:
        for n in range(self.RETRIES + 1):
            try:
                # the attempts this writer recorded: no query for them (after a lost connection, ask:
                # the lost batch may have committed)
                self._attempts |= self.ledger.apply_updates(batch, self._attempts if n == 0 else None)
                return
            except LedgerUnavailable as exc:
                if exc.disconnect and n < self.RETRIES:
                    time.sleep(0.2 * (n + 1))
                    continue
                self._fail(exc)
                return
            except BaseException as exc:  # noqa: BLE001 - reported by close()
                self._fail(exc)
                return

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        if self.on_error is not None:
            with contextlib.suppress(Exception):  # the error itself is what close() reports
                self.on_error(exc)

    def close(self) -> None:
        """Write everything queued, then stop."""
        self._closing.set()
        self._thread.join()
        if isinstance(self._error, UserError):
            raise self._error
        if self._error is not None:
            raise UserError(f"the ledger cannot be written: {self._error}") from self._error
