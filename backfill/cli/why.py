"""`backfill why INSTANCE`: what it reads, what it waits for, why it is stale, blocked or failed."""

from __future__ import annotations

import shutil
import textwrap
import time
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UserError
from .common import JsonOpt, ProjectOpt, emit_json, project_root, user_errors

if TYPE_CHECKING:
    from ..plan.why import Diagnosis


def _cut(text: str, width: int) -> str:
    """One line of at most `width` characters, its indent kept (for errors: `logs` has them whole)."""
    indent = text[:len(text) - len(text.lstrip())]
    text = indent + " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters, continued two columns further in."""
    indent = text[:len(text) - len(text.lstrip())]
    return textwrap.wrap(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent + "    ",
                         break_on_hyphens=False) or [text]


def _attempt(a: dict[str, object]) -> str:
    when = time.strftime("%m-%d %H:%M:%S", time.localtime(float(a["started_at"])))  # type: ignore[arg-type]
    return f"attempt {a['number']} {a['status']}, started {when}, pid {a['pid']} on {a['host']}"


def _short(text: str, rel: str) -> str:
    """Instance ids in `text` without their backfill's prefix, except inside `commands` (they must run as shown)."""
    parts = text.split("`")
    return "`".join(p if n % 2 else p.replace(rel, "") for n, p in enumerate(parts))


def render(d: Diagnosis, width: int) -> list[str]:
    rel = d.backfill + "/"
    w = max(width, 60)
    lines = _wrap(f"{d.id}: {_short(d.summary, rel)}", w)
    if d.mode != "run":
        lines.append(f"mode: {d.mode}" + (" (Skip Execution: it ends paused)" if d.mode == "skip" else ""))
    lines.append("reads:" if d.reads else "reads: no other table")
    for r in d.reads:
        if isinstance(r.ranges, list):
            spans = ", ".join(a if a == b else f"{a}..{b}" for a, b in r.ranges)
            where = f"{spans} ({r.present} of {r.expected} present)"
        elif r.ranges == "all":
            where = f"every partition ({r.present} present)"
        else:
            where = "partitions not recorded (ledger without read sets)"
        lines += _wrap(f"  {r.table}: {where}", w)
        for iid, status in r.instances:
            lines.append(_cut(f"    instance {iid.removeprefix(rel)}: {status}", w))
    if d.waits:
        lines.append("waits for:")
        lines += [line for x in d.waits for line in _wrap(f"  {x.kind}: {_short(x.detail, rel)}", w)]
    if d.chain:
        lines.append("blocked by:")
        for n, link in enumerate(d.chain):
            tag = " <- root cause" if n == len(d.chain) - 1 else ""
            lines.append(_cut(f"  {'  ' * n}{link.id.removeprefix(rel)} {link.status}{tag}", w))
            if link.error:
                lines.append(_cut(f"  {'  ' * n}  {_short(link.error, rel)}", w))
        root = d.chain[-1]
        if d.root_attempt:
            lines.append(_cut(f"root cause's last {_attempt(d.root_attempt)}", w))
        lines.append(_cut(f"its whole log: backfill logs {root.id}", w))
    if d.stale:
        lines.append("stale:")
        lines += [line for s in d.stale for line in _wrap(f"  {s}", w)]
    if d.last_attempt:
        lines.append(_cut(f"last {_attempt(d.last_attempt)}", w))
        if d.last_attempt["error"]:
            lines.append(_cut(f"  {d.last_attempt['error']}", w))
        lines.append(_cut(f"whole log: {d.log}", w))
    else:
        lines.append("last attempt: none (it has not run)")
    return lines


def register(app: typer.Typer) -> None:
    @app.command("why", help="Why an instance is where it is: what it reads, what it waits for, why it is "
                             "stale, blocked or failed (followed to the root cause), its last attempt.")
    def why(instance: Annotated[str, typer.Argument(help="BACKFILL/TABLE/DS")],
            project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
        from datetime import date

        from ..plan.status import table_graph
        from ..plan.why import diagnose
        from ..plan.workspace import open_ledger
        from ..spec.loader import load_project

        with user_errors(as_json):
            spec = load_project(project_root(project))
            ledger = open_ledger(spec, create=False)
            if ledger is None:
                raise UserError("no ledger yet: nothing was applied in this project; run `backfill apply`")
            try:
                found = diagnose(ledger, spec, instance, table_graph(spec, date.today()), time.time())
            finally:
                ledger.close()
            if found is None:
                raise UserError(f"no instance '{instance}'; list them with `backfill instances`")
        if as_json:
            emit_json(found.to_json())
            return
        typer.echo("\n".join(render(found, shutil.get_terminal_size((80, 24)).columns)))
