"""The cyclic garbage collector during a command's run.

A full collection walks every object the process holds: the imported modules, the specs, the plans
and the ledger rows of thousands of instances, all of which live until the command ends. It holds the
GIL while it walks, so every instance thread stops with it: 40-45 ms a pass, once or twice an apply of
2,000 instances. Inside `frozen_heap`, what exists when it starts (and again when `settle` is called,
once the plans and rows are built) is moved out of the collector's reach with `gc.freeze`; objects made
during the run are collected as usual. At the end everything is handed back (`gc.unfreeze`).

A host process that froze its own heap is left as it is: nothing is frozen or unfrozen then.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["frozen_heap", "settle"]

_lock = threading.Lock()
_scopes = 0  # open frozen_heap scopes that froze the heap (0 when the host had frozen it)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """A scope (a context manager, or a decorator) in which what exists is frozen (see above)."""
    global _scopes
    with _lock:
        own = _scopes > 0 or gc.get_freeze_count() == 0
        if own:
            _scopes += 1
            gc.freeze()
    try:
        yield
    finally:
        if own:
            with _lock:
                _scopes -= 1
                if _scopes == 0:
                    gc.unfreeze()


def settle() -> None:
    """Inside a scope: what was built since it began (plans, rows) stays out of the collector's reach too."""
    with _lock:
        if _scopes:
            gc.freeze()
