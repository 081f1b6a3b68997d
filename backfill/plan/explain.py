"""Explain a plan: text (like a terraform plan summary), JSON (byte-stable) and markdown."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from ..sql.readsets import read_set_json
from .planner import BackfillPlan, PlannedInstance

__all__ = ["plan_to_json", "plan_to_markdown", "plan_to_text", "instance_json"]

ACTIONS = ("new", "stale", "failed", "done")
_SYMBOL = {"new": "+", "stale": "~", "failed": "!", "done": "="}


def instance_json(i: PlannedInstance, with_sql: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": i.id, "table": i.table, "ds": i.ds, "group": i.group, "position": i.position,
        "mode": i.mode, "action": i.action, "fingerprint": i.fingerprint,
        "table_fingerprint": i.table_fingerprint, "upstream": list(i.upstream),
        "fields": list(i.fields) if i.fields else "all", "linked": list(i.linked), "reason": i.reason,
        "reads": read_set_json(i.reads),
    }
    if i.batch:
        out["batch"] = i.batch
    if i.ranged:
        out["ranged"] = True
    if with_sql:
        out["sql"] = i.sql
        if i.batch_sql:
            out["batch_sql"] = i.batch_sql
    return out


def _batched(p: BackfillPlan) -> bool:
    """Whether any table of the plan runs otherwise than one plain template per partition."""
    return any(r.mode != "partition" or r.ranged for r in p.runs)


def backfill_json(p: BackfillPlan) -> dict[str, Any]:
    return {
        "name": p.name, "key": p.key, "spec_file": p.spec_file, "runtime": p.runtime or "immediately",
        "order": p.order, "groups": [list(g) for g in p.group_dates], "tables": list(p.tables),
        "downstream_added": list(p.downstream_added), "counts": p.counts(), "notes": list(p.notes),
        "retries": {"count": p.retries, "delay_seconds": p.retry_delay},
        "instances": [instance_json(i) for i in p.instances],
        **({"runs": {r.table: {"batch_size": r.batch_size, "mode": r.mode, "ranged": r.ranged,
                               "batches": len({i.batch for i in p.instances if i.table == r.table and i.batch})}
                     for r in p.runs}} if _batched(p) else {}),
    }


def plan_to_json(plans: tuple[BackfillPlan, ...] | list[BackfillPlan], extra: dict[str, Any] | None = None) -> str:
    """Byte-stable JSON with one instance per line: fast to write (the C encoder), easy to diff."""
    def dumps(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    backfills = []
    for p in plans:
        doc = backfill_json(p)
        instances = doc.pop("instances")
        lines = ",\n".join(dumps(i) for i in instances)
        backfills.append(dumps(doc)[:-1] + ', "instances": [\n' + lines + "\n]}")
    rest = dumps({"format": "backfill-plan/1", **(extra or {})})
    return '{"backfills": [\n' + ",\n".join(backfills) + "\n], " + rest[1:] + "\n"


def _span(dss: list[str]) -> str:
    if not dss:
        return "-"
    dss = sorted(dss)
    return dss[0] if dss[0] == dss[-1] else f"{dss[0]} .. {dss[-1]}"


def _table_rows(p: BackfillPlan) -> list[tuple[str, Counter[str], list[str], str]]:
    per: dict[str, list[PlannedInstance]] = defaultdict(list)
    for i in p.instances:
        per[i.table].append(i)
    runs = {r.table: r for r in p.runs} if _batched(p) else {}
    rows = []
    for t in p.tables:
        insts = per.get(t, [])
        counts: Counter[str] = Counter(str(i.action) for i in insts)
        note = []
        if t in runs:  # how it runs, once any table of the plan runs in batches
            batches = len({i.batch for i in insts if i.batch})
            note.append(runs[t].describe() + (f": {batches} batch(es) to run" if runs[t].mode != "partition" else ""))
        if insts and insts[0].mode != "run":
            note.append("skip (ends paused)" if insts[0].mode == "skip" else "dry-run")
        if insts and insts[0].fields:
            note.append("fields " + ", ".join(insts[0].fields))
            if insts[0].linked:
                note.append("linked " + ", ".join(insts[0].linked))
        if t in p.downstream_added:
            note.append("downstream")
        whole = sorted({t for i in insts for t, r in i.reads if r == "all"})
        if whole:
            note.append("reads every partition of " + ", ".join(whole) + " (no partition predicate)")
        upstream_changed = sum(1 for i in insts if i.reason.startswith("upstream"))
        if upstream_changed:
            note.append(f"{upstream_changed} stale because an upstream changes")
        rows.append((t, counts, [i.ds for i in insts], "; ".join(note)))
    return rows


def plan_to_text(plans: tuple[BackfillPlan, ...] | list[BackfillPlan], verbose: bool = False) -> str:
    out: list[str] = []
    total: Counter[str] = Counter()
    for p in plans:
        counts = p.counts()
        total.update(counts)
        out.append(f"backfill {p.name}  ({p.spec_file})")
        when = p.runtime or "immediately"
        out.append(f"  runtime {when}, order {p.order}, {len(p.group_dates)} group(s), "
                   f"{len(p.instances)} instance(s)")
        for g, dates in enumerate(p.group_dates, start=1):
            out.append(f"  group {g}: {len(dates)} date(s) {dates[0]} -> {dates[-1]}")
        out.extend(f"  note: {n}" for n in p.notes)
        width = max([len(t) for t in p.tables] + [5])
        out.append(f"  {'table':<{width}}  {'new':>5} {'stale':>5} {'failed':>6} {'done':>5}  dates")
        for t, c, dss, note in _table_rows(p):
            line = f"  {t:<{width}}  {c['new']:>5} {c['stale']:>5} {c['failed']:>6} {c['done']:>5}  {_span(dss)}"
            out.append(line + (f"  [{note}]" if note else ""))
        if verbose:
            for i in p.instances:
                if i.action != "done":
                    why = f"  ({i.reason})" if i.reason else ""
                    out.append(f"    {_SYMBOL[i.action]} {i.id}  group {i.group}  {i.mode}  {i.fingerprint}{why}")
        out.append("")
    summary = ", ".join(f"{total[a]} {a}" for a in ACTIONS)
    runs = total["new"] + total["stale"] + total["failed"]
    out.append(f"Plan: {summary}. Apply would run {runs} instance(s).")
    return "\n".join(out) + "\n"


def plan_to_markdown(plans: tuple[BackfillPlan, ...] | list[BackfillPlan]) -> str:
    out: list[str] = ["## Backfill plan", ""]
    for p in plans:
        c = p.counts()
        out.append(f"### `{p.name}`")
        out.append("")
        out.append(f"`{p.spec_file}` · runtime {p.runtime or 'immediately'} · order {p.order} · "
                   f"{len(p.group_dates)} group(s) · **{c['new']} new, {c['stale']} stale, "
                   f"{c['failed']} failed, {c['done']} done**")
        out.append("")
        out.append("| table | new | stale | failed | done | dates | notes |")
        out.append("|---|---:|---:|---:|---:|---|---|")
        for t, cc, dss, note in _table_rows(p):
            cells = [f"`{t}`", *(str(cc[a]) for a in ("new", "stale", "failed", "done")), _span(dss), note]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        out.extend(f"> {n}" for n in p.notes)
        if p.notes:
            out.append("")
        out.append("<details><summary>groups</summary>")
        out.append("")
        for g, dates in enumerate(p.group_dates, start=1):
            out.append(f"- group {g}: {len(dates)} date(s), {dates[0]} → {dates[-1]}")
        out.append("")
        out.append("</details>")
        out.append("")
    return "\n".join(out)
