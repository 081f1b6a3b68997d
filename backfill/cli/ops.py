"""Operations on instances: rerun, set-success, kill, pause, resume, unlock, serve."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ..errors import SpecErrors, UserError
from .common import JsonOpt, ProjectOpt, emit_json, project_root, user_errors
from .progress import LiveProgress

LockOpt = Annotated[float, typer.Option("--lock-timeout", help="seconds to wait for a running apply")]


def _ops(project: ProjectOpt):  # type: ignore[no-untyped-def]
    from ..plan.workspace import open_ledger
    from ..run.operations import Operations
    from ..spec.loader import load_project

    root = project_root(project)
    ledger = open_ledger(load_project(root), create=False)
    if ledger is None:
        raise UserError("no ledger yet: nothing was applied in this project")
    return Operations(root, ledger, lambda m: typer.echo(m, err=True))


def _report_run(report, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        emit_json({"ok": report.ok, "name": report.name, "counts": report.counts, "rows": report.rows,
                   "failures": [{"id": i, "status": s, "error": e} for i, s, e in report.failures]})
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
        typer.echo(f"backfill {report.name}: {counts}; {report.rows} row(s) in {report.seconds:.2f}s")
        for iid, status, error in report.failures:
            typer.echo(f"  {status:<8} {iid}: {error}")
    if not report.ok:
        if not as_json:
            print(f"error: {len(report.failures)} instance(s) did not succeed", file=sys.stderr)
        raise typer.Exit(1)


def _err(line: str) -> None:
    typer.echo(line, err=True)


def _say(as_json: bool, line: str) -> Callable[[], None]:
    """What a rerun says on stdout once it holds the lock (nothing in --json)."""
    return (lambda: None) if as_json else (lambda: typer.echo(line))


def _serve_once(root: Path, interval: float) -> list[str]:
    """Start the scheduled backfills that are due and still wait (or were never recorded)."""
    from ..plan.workspace import open_ledger
    from ..run.apply import apply_project
    from ..spec.loader import load_project

    project = load_project(root)
    due = [b for b in project.backfills.values() if b.runtime is not None and b.runtime.timestamp() <= time.time()]
    if not due:
        return []
    ledger = open_ledger(project, create=False)
    waiting: set[str] = set()
    recorded: set[str] = set()
    if ledger is not None:
        try:
            recorded = {b["spec_key"] for b in ledger.backfills()}
            waiting = {r.backfill for r in ledger.instances(status="waiting")}
        finally:
            ledger.close()
    names = [b.name or b.key for b in due if b.key not in recorded or (b.name or b.key) in waiting]
    if not names:
        return []
    report = apply_project(root, names, lock_timeout=interval)
    return [f"ran {b.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(b.counts.items()))
            for b in report.backfills if b.counts]


def register(app: typer.Typer) -> None:
    @app.command("rerun", help="Run recorded instances again (all, --failed, --instance ID, plus --downstream).")
    def rerun(
        backfill: Annotated[str, typer.Argument(help="backfill name")],
        failed: Annotated[bool, typer.Option("--failed", help="only failed, paused, blocked or killed")] = False,
        instance: Annotated[list[str] | None, typer.Option("--instance", help="BACKFILL/TABLE/DS (repeatable)")] = None,
        downstream: Annotated[bool, typer.Option("--downstream", help="and every instance depending on them")] = False,
        lock_timeout: LockOpt = 0.0,
        project: ProjectOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from ..run.apply import run_again

        live = LiveProgress(False)
        with user_errors(as_json):
            ops = _ops(project)
            name, ids = ops.to_rerun(backfill, failed, list(instance or []), downstream)
            ops.ledger.close()
            report = run_again(ops.root, name, ids, lock_timeout, say=lambda m: typer.echo(m, err=True),
                               on_change=live.on_change,
                               announce=_say(as_json, f"rerunning {len(ids)} instance(s) of {name}"))
        _report_run(report, as_json)

    @app.command("set-success", help="Mark an instance successful without running it; --resume also runs "
                                     "what it was blocking (set success and resume scheduling).")
    def set_success(instance: Annotated[str, typer.Argument(help="BACKFILL/TABLE/DS")],
                    resume: Annotated[bool, typer.Option("--resume", help="and run what it was blocking")] = False,
                    lock_timeout: LockOpt = 0.0, project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
        from ..run.apply import run_again
        from ..run.lock import hold_lock

        with user_errors(as_json), contextlib.ExitStack() as held:
            ops = _ops(project)
            held.callback(ops.ledger.close)
            if resume:  # it runs what it releases: a lock another apply holds refuses it before any change
                held.enter_context(hold_lock(ops.ledger, f"set-success {instance}", lock_timeout, _err))
            done = ops.set_success(instance)
            if not resume:
                if as_json:
                    emit_json({"ok": True, "instances": done})
                else:
                    typer.echo(f"{instance}: success (set by operator). Run `backfill rerun {instance.split('/')[0]} "
                               "--failed` for what it blocked.")
                return
            name, ids = ops.to_release(instance)
            runtime = ops.wait_for_schedule(name, ids) if ids else None
            if runtime is not None:  # a scheduled backfill: what it was blocking waits for its time
                if as_json:
                    emit_json({"ok": True, "instances": done, "ran": [], "waiting": ids, "scheduled_for": runtime})
                else:
                    typer.echo(f"{instance}: success (set by operator); the {len(ids)} instance(s) it was blocking "
                               f"wait for their scheduled time {runtime}")
                return
            if not ids:
                if as_json:
                    emit_json({"ok": True, "instances": done, "ran": []})
                else:
                    typer.echo(f"{instance}: success (set by operator); it was blocking nothing")
                return
            report = run_again(ops.root, name, ids, lock_timeout, say=_err, lock_held=True,
                               announce=_say(as_json, f"{instance}: success (set by operator); running the "
                                                      f"{len(ids)} instance(s) it was blocking"))
        _report_run(report, as_json)

    def _flagging(verb: str, target: str, project: ProjectOpt, as_json: bool) -> None:
        with user_errors(as_json):
            ops = _ops(project)
            ids, acted = getattr(ops, verb)(target)
            live = ops.apply_running()
        if as_json:
            emit_json({"ok": True, "instances": ids, "apply_running": live})
        else:
            how = "the running apply acts on it within a second" if acted else "done"
            typer.echo(f"{verb}: {len(ids)} instance(s) of {target}; {how}")

    @app.command("kill", help="Stop running SQL and mark instances killed (they block their downstream).")
    def kill(target: Annotated[str, typer.Argument(help="BACKFILL or BACKFILL/TABLE/DS")],
             project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
        _flagging("kill", target, project, as_json)

    @app.command("pause", help="Hold instances that have not started; `resume` runs them.")
    def pause(target: Annotated[str, typer.Argument(help="BACKFILL or BACKFILL/TABLE/DS")],
              project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
        _flagging("pause", target, project, as_json)

    @app.command("resume", help="Release paused and skipped instances and run them and what they blocked.")
    def resume(target: Annotated[str, typer.Argument(help="BACKFILL or BACKFILL/TABLE/DS")],
               lock_timeout: LockOpt = 0.0, project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
        from ..run.apply import run_again
        from ..run.lock import hold_lock

        with user_errors(as_json), contextlib.ExitStack() as held:
            ops = _ops(project)
            held.callback(ops.ledger.close)
            running = ops.apply_running()  # another apply's, asked before this command holds the lock
            if ops.resumes_paused(target):  # it runs them: a lock another apply holds refuses it before any change
                held.enter_context(hold_lock(ops.ledger, f"resume {target}", lock_timeout, _err))
            name, ids, cleared = ops.to_resume(target)
            runtime = ops.wait_for_schedule(name, ids) if ids else None
            if runtime is not None:  # resuming releases a hold; a scheduled backfill still waits for its time
                if as_json:
                    emit_json({"ok": True, "released": cleared, "ran": [], "waiting": ids, "scheduled_for": runtime,
                               "apply_running": running})
                else:
                    typer.echo(f"resumed {len(ids)} instance(s) of {name}; they wait for their scheduled time "
                               f"{runtime}")
                return
            if not ids:  # only held flags of instances a running apply has not reached yet
                if as_json:
                    emit_json({"ok": True, "released": cleared, "ran": [], "apply_running": running})
                else:
                    typer.echo(f"resumed {target}" + ("; the running apply starts it when reached" if running
                                                      else f": {cleared} instance(s) no longer held"))
                return
            report = run_again(ops.root, name, ids, lock_timeout, say=_err, lock_held=True,
                               announce=_say(as_json, f"resuming {len(ids)} instance(s) of {name}"))
        _report_run(report, as_json)

    @app.command("unlock", help="Break the apply lock left by a process that is no longer running.")
    def unlock(project: ProjectOpt = None,
               yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
               as_json: JsonOpt = False) -> None:
        with user_errors(as_json):
            ops = _ops(project)
            holder = ops.ledger.lock_holder()
            if holder is None:
                if as_json:
                    emit_json({"ok": True, "locked": False, "broke": None})
                else:
                    typer.echo("the ledger is not locked")
                return
            who = f"pid {holder['pid']} on {holder['host']} ({holder['purpose']})"
            if holder["alive"]:
                raise UserError(f"the lock is held by {who}, which is still running; stop it first")
            if as_json and not yes:
                raise UserError(f"the lock is held by {who}, which is no longer running; "
                                "`backfill unlock --json` breaks it only with --yes")
            try:
                confirmed = yes or typer.confirm(f"Break the lock of {who}?", default=False)
            except typer.Abort:  # stdin closed (or Ctrl-C) at the question: the same as answering no
                confirmed = False
            if not confirmed:
                raise UserError("unlock cancelled")
            ops.ledger.unlock()
            if as_json:
                emit_json({"ok": True, "locked": False, "broke": {k: holder[k] for k in ("pid", "host", "purpose")}})
            else:
                typer.echo(f"broke the lock of {who}; the next apply recovers its unfinished instances")

    @app.command("serve", help="Long-running: start scheduled backfills when their runtime comes.")
    def serve(project: ProjectOpt = None,
              interval: Annotated[float, typer.Option(help="seconds between checks")] = 10.0,
              once: Annotated[bool, typer.Option("--once", help="check once and exit")] = False) -> None:

        root = project_root(project)
        typer.echo(f"serving {root}: checking scheduled backfills every {interval:g}s")
        from ..run.signals import Stopped

        while True:
            try:
                ran = _serve_once(root, interval)
            except Stopped as exc:  # SIGTERM or SIGINT during a scheduled apply: stop serving
                print(f"error: {exc}", file=sys.stderr)
                raise typer.Exit(1) from None
            except (SpecErrors, UserError) as exc:  # report, keep serving: the next commit may fix it
                lines = [e.one_line() for e in exc.errors] if isinstance(exc, SpecErrors) else [f"error: {exc}"]
                for line in lines:
                    print(line, file=sys.stderr)
                if once:
                    raise typer.Exit(1) from None
            else:
                for line in ran:
                    typer.echo(line)
            if once:
                return
            time.sleep(interval)
