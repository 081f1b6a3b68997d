"""The temporary Prefect server's process (tempserver.py spawns it): it dies with its parent, hosts the
reporters of its applies, and becomes the server (uvicorn on Prefect's app) once asked to boot.

`python -m backfill.run.serverchild PARENT_PID PIPE_FD main|other SOCKET now|later UVICORN_ARGS...`:
the death signal follows the spawning thread, so it is set only when the parent's main thread spawned
it; the pipe from the parent says `G` (boot now) or `L` (the apply ended: record, then go), and its
end of file means the parent is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import threading
import time
from types import FrameType

__all__ = ["main"]

PR_SET_PDEATHSIG = 1


def _death_signal(sig: int) -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def main(argv: list[str]) -> None:
    os.nice(10)  # the apply's own work first: this server records it, nobody waits for its boot
    with contextlib.suppress(AttributeError, OSError):  # and only on a core the apply leaves idle
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    parent, fd, thread, socket_name, when = int(argv[0]), int(argv[1]), argv[2], argv[3], argv[4]
    if thread == "main":
        _death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)
    boot = threading.Event()  # deferred: Prefect is imported once the apply ran (L) or someone asks (G)
    if when == "now":
        boot.set()

    def watch() -> None:
        try:
            byte = os.read(fd, 1)
            while byte == b"G":
                boot.set()
                byte = os.read(fd, 1)
            if byte == b"L":  # the apply ended: record what it sent, then go
                os.kill(os.getpid(), signal.SIGUSR1)  # the death signal off while the main thread idles
                boot.set()
                from .reporter_host import recording

                deadline = time.monotonic() + 300
                time.sleep(0.2)
                while recording() and time.monotonic() < deadline:
                    time.sleep(0.1)
        finally:
            with contextlib.suppress(OSError):
                os.unlink("lingering")
            os._exit(0)

    def keep(_signum: int, _frame: FrameType | None) -> None:
        _death_signal(0)
        open("lingering", "w").close()  # tells the apply it may exit: the death signal is off

    def report() -> None:  # the reporter of each apply connecting to this server (reporter_child.py)
        from .reporter_host import serve_socket

        serve_socket(socket_name, boot.wait)  # each stream is read as it comes; played once we boot

    signal.signal(signal.SIGUSR1, keep)
    threading.Thread(target=watch, daemon=True).start()
    threading.Thread(target=report, daemon=True).start()
    while not boot.wait(0.1):  # in steps: the main thread's signal handler runs meanwhile
        pass
    lock = open("server.lock", "w")  # noqa: SIM115 - held until the process exits
    fcntl.flock(lock, fcntl.LOCK_EX)  # one server on this database: a lingering one finishes first
    sys.argv = ["uvicorn", *argv[5:]]
    import uvicorn.main

    uvicorn.main.main()


if __name__ == "__main__":
    main(sys.argv[1:])
