"""Explain a plan diff: text (like a terraform plan), JSON (byte-stable) and markdown for a pull request."""

from __future__ import annotations

import difflib
import json

from .gitdiff import WORKTREE, BackfillDiff, PlanDiff, TableDiff, compact_ranges

__all__ = ["diff_to_json", "diff_to_markdown", "diff_to_text"]

_KINDS = (("added", "+"), ("removed", "-"), ("changed", "~"))
_STATUS = {"added": "+", "removed": "-", "changed": "~", "unchanged": " "}
_MAX_DIFF_LINES = 60


def _side(label: str) -> str:
    return "the working tree" if label == WORKTREE else label


def _totals(d: PlanDiff) -> str:
    s = d.summary
    return f"{s['added']} added, {s['removed']} removed, {s['changed']} changed"


def _why(t: TableDiff) -> str:
    return ", ".join(sorted(t.reasons))


def diff_to_json(d: PlanDiff) -> str:
    return json.dumps(d.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def diff_to_text(d: PlanDiff) -> str:
    out = [f"Comparing backfill plans: base {d.base} -> head {_side(d.head)}", ""]
    for b in d.backfills:
        if b.status == "unchanged":
            out.append(f"  {b.name}: no changes ({b.head_count} instance(s))")
            continue
        counts = f"{b.base_count} -> {b.head_count} instance(s)"
        out.append(f"{_STATUS[b.status]} backfill {b.name}  ({b.spec_file}; {b.status}, {counts})")
        for key, (old, new) in b.settings.items():
            out.append(f"    ~ {key}: {old} -> {new}")
        width = max([len(t.table) for t in b.tables] + [5])
        for t in b.tables:
            for kind, sym in _KINDS:
                dss = getattr(t, kind)
                if dss:
                    why = f"  ({_why(t)})" if kind == "changed" else ""
                    out.append(f"    {sym} {t.table:<{width}}  {len(dss):>4} {kind:<7}  "
                               f"{compact_ranges(dss)}{why}")
    if d.backfills:
        out.append("")
    if d.has_differences:
        out.append(f"Diff: {_totals(d)} instance(s).")
    else:
        out.append("No differences: both sides plan the same instances with the same SQL.")
    return "\n".join(out) + "\n"


def _sql_diff(t: TableDiff, d: PlanDiff) -> list[str]:
    if t.sample is None:
        return []
    a, b = t.sample
    lines = list(difflib.unified_diff(a.sql.splitlines(), b.sql.splitlines(), fromfile=f"{d.base}:{a.id}",
                                      tofile=f"{d.head}:{b.id}", n=2, lineterm=""))
    if not lines:
        notes = []
        if a.mode != b.mode:
            notes.append(f"mode {a.mode} -> {b.mode}")
        if a.fields != b.fields:
            notes.append(f"fields {', '.join(a.fields or ('all',))} -> {', '.join(b.fields or ('all',))}")
        if t.reasons == {"upstream"}:
            notes.append("it reads an upstream partition that changes, so it runs again")
        return [f"The SQL of `{b.id}` is the same; " + ("; ".join(notes) or "its table definition changed")
                + ".", ""]
    if len(lines) > _MAX_DIFF_LINES:
        lines = [*lines[:_MAX_DIFF_LINES], f"... ({len(lines) - _MAX_DIFF_LINES} more lines)"]
    n = len(t.changed)
    return [f"<details><summary><code>{t.table}</code>: SQL of <code>{b.ds}</code>"
            f"{f' (1 of {n} changed)' if n > 1 else ''}</summary>", "", "```diff", *lines, "```", "",
            "</details>", ""]


def _md_backfill(b: BackfillDiff, d: PlanDiff) -> list[str]:
    out = [f"### {_STATUS[b.status].strip() or '='} `{b.name}` — {b.status}", "",
           f"`{b.spec_file}` · {b.base_count} → {b.head_count} instance(s)", ""]
    if b.settings:
        out += [f"- `{k}`: {old} → {new}" for k, (old, new) in b.settings.items()] + [""]
    if b.tables:
        out += ["| table | added | removed | changed | dates |", "|---|---:|---:|---:|---|"]
        for t in b.tables:
            dates = "<br>".join(f"{sym} {compact_ranges(getattr(t, k))}"
                                for k, sym in _KINDS if getattr(t, k))
            why = f" ({_why(t)})" if t.changed else ""
            counts = f"{len(t.added)} | {len(t.removed)} | {len(t.changed)}{why}"
            out.append(f"| `{t.table}` | {counts} | {dates} |")
        out.append("")
    for t in b.tables:
        if t.changed:
            out += _sql_diff(t, d)
    return out


def diff_to_markdown(d: PlanDiff) -> str:
    out = [f"## Backfill diff: `{d.base}` → {'working tree' if d.head == WORKTREE else f'`{d.head}`'}", ""]
    if not d.has_differences:
        n = sum(b.head_count for b in d.backfills)
        out += [f"**No differences**: {len(d.backfills)} backfill(s), {n} instance(s), "
                "same plan on both sides.", ""]
        return "\n".join(out)
    changed = [b for b in d.backfills if b.status != "unchanged"]
    same = [b.name for b in d.backfills if b.status == "unchanged"]
    out += [f"**{_totals(d)}** instance(s) in {len(changed)} backfill(s)"
            + (f"; unchanged: {', '.join(f'`{n}`' for n in same)}" if same else "") + ".", ""]
    for b in changed:
        out += _md_backfill(b, d)
    return "\n".join(out)
