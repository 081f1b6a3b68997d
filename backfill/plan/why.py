"""`backfill why INSTANCE`: one instance's run diagnosis, from the ledger and the specs.

What it reads (per upstream table: the partitions as compact ranges from its recorded read set, and
how many the ledger holds; without read sets, the tables its SQL reads); what it waits for now (its
scheduled time, an operator's pause, an upstream instance, an earlier date of its group, another
backfill of the apply, a concurrency slot, a worker, an apply at all); its blockers down to the root
cause; why a successful partition is stale; its last attempt and where the whole log is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..spec.model import Project
from ..state.fingerprints import template_fingerprint
from ..state.ledger import ACTIVE, InstanceRow, Ledger
from ..state.schema import T_INSTANCES, instance_rows
from .freshness import stale_reasons
from .partition_ranges import expand as _expand
from .partition_ranges import ranges_of

__all__ = ["Diagnosis", "Link", "Read", "Wait", "diagnose", "ranges_of"]

DONE = ("success", "dry_run")
BAD = ("failed", "paused", "blocked", "killed")
_UPSTREAM = re.compile(r"upstream (\S+) (\w+)\b")
EARLIER = "an earlier date of its group"


@dataclass(frozen=True)
class Read:
    table: str
    ranges: list[list[str]] | str | None  # [[first, last], ...] ds texts, "all", None = not recorded
    present: int | None  # partitions of those ranges the ledger holds (None: unknown)
    expected: int | None
    instances: list[list[str]] = field(default_factory=list)  # [[upstream instance id, status], ...]


@dataclass(frozen=True)
class Wait:
    kind: str  # schedule | pause | upstream | group | backfill | slot | worker | apply
    detail: str
    instance: str | None = None


@dataclass(frozen=True)
class Link:
    id: str
    status: str
    error: str | None


@dataclass(frozen=True)
class Diagnosis:
    id: str
    backfill: str
    status: str
    group: int
    mode: str
    held: bool
    summary: str
    reads: list[Read]
    waits: list[Wait]
    chain: list[Link]  # its blockers, one after another; the last one is the root cause
    stale: list[str]
    last_attempt: dict[str, Any] | None
    log: str  # the command that shows its whole log
    root_attempt: dict[str, Any] | None = None  # the root cause's last attempt, for a blocked instance

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _recorded_reads(row: InstanceRow) -> Mapping[str, Any] | None:
    """The instance's recorded read set (ledger column `reads`), None where the ledger has none."""
    raw = getattr(row, "reads", None)
    if isinstance(raw, str):
        raw = json.loads(raw) if raw else None
    return raw if isinstance(raw, Mapping) else None


class _Ledger:
    """The ledger rows a diagnosis looks at, each read by a narrow query (a backfill may hold 100,000)."""

    def __init__(self, ledger: Ledger, row: InstanceRow):
        self.ledger = ledger
        self.row = row
        self.rows: dict[str, InstanceRow] = {row.id: row}
        self._parts: dict[str, set[str]] = {}

    def _select(self, *where: Any) -> list[InstanceRow]:
        q = sa.select(T_INSTANCES).where(*where).order_by(T_INSTANCES.c.position, T_INSTANCES.c.seq)
        with self.ledger.engine.connect() as conn:
            found = instance_rows(conn.execute(q))
        self.rows.update((r.id, r) for r in found)
        return found

    def earlier(self, r: InstanceRow, statuses: Sequence[str], negate: bool = False,
                skip_group_blocked: bool = False) -> list[InstanceRow]:
        """Instances of r's backfill and group at an earlier date, with (or without) those statuses."""
        c = T_INSTANCES.c
        where = [c.backfill == r.backfill, c.grp == r.group, c.position < r.position,
                 c.status.not_in(statuses) if negate else c.status.in_(statuses)]
        if skip_group_blocked:
            where.append(sa.or_(c.error.is_(None), c.error.not_like(f"{EARLIER}%")))
        return self._select(*where)

    def active(self) -> tuple[list[InstanceRow], list[str]]:
        """Running instances (few: at most max_parallel), and the backfills with any waiting or running."""
        c = T_INSTANCES.c
        with self.ledger.engine.connect() as conn:
            names = [str(n) for (n,) in conn.execute(sa.select(c.backfill).distinct()
                                                      .where(c.status.in_(("waiting", "running"))))]
        return self._select(c.status == "running"), sorted(names)

    def get(self, iid: str) -> InstanceRow | None:
        """An instance of any backfill (upstream ids may name other backfills' instances)."""
        if iid not in self.rows:
            found = self.ledger.instance(iid)
            if found is None:
                return None
            self.rows[iid] = found
        return self.rows[iid]

    def present(self, table: str) -> set[str]:
        if table not in self._parts:
            self._parts[table] = {ds for _t, _f, _tfp, dss in self.ledger.partition_groups(table) for ds in dss}
        return self._parts[table]


def _rel(iid: str, backfill: str) -> str:
    return iid.removeprefix(f"{backfill}/")


def _reads(view: _Ledger, project: Project, graph: Mapping[str, Sequence[str]]) -> list[Read]:
    row = view.row
    by_table: dict[str, list[list[str]]] = {}
    for u in row.upstream:
        up = view.get(u)
        if up is not None:
            by_table.setdefault(up.table, []).append([u, up.status])
    recorded = _recorded_reads(row)
    out: list[Read] = []
    tables = list(recorded) if recorded is not None else list(dict.fromkeys([*graph.get(row.table, ()), *by_table]))
    for table in tables:
        spec = recorded.get(table) if recorded is not None else None
        have = view.present(table)
        if isinstance(spec, list) and any(a is None or b is None for a, b in spec):
            spec = "all"  # a range open at one end (`ds < ...`): shown as every partition
        if spec == "all":
            out.append(Read(table, "all", len(have), None, by_table.get(table, [])))
        elif isinstance(spec, list):
            wanted = [ds for first, last in spec for ds in _expand(str(first), str(last))]
            out.append(Read(table, [[str(a), str(b)] for a, b in spec], sum(ds in have for ds in wanted), len(wanted),
                            by_table.get(table, [])))
        else:
            out.append(Read(table, None, None, None, by_table.get(table, [])))
    return out


def _waits(view: _Ledger, project: Project, runtime: str | None, apply_running: bool, now: float) -> list[Wait]:
    row, bf = view.row, view.row.backfill
    out: list[Wait] = []
    if runtime and datetime.fromisoformat(runtime).timestamp() > now:
        out.append(Wait("schedule", f"its scheduled time {runtime}; `backfill serve` (or an apply then) starts it"))
    if row.held:
        out.append(Wait("pause", f"an operator's pause: `backfill resume {row.id}` releases it"))
    for u in row.upstream:
        up = view.get(u)
        if up is not None and up.status not in DONE:
            then = "; it will end blocked" if up.status in BAD else ""
            out.append(Wait("upstream", f"upstream {_rel(u, bf)} ({up.status}){then}", u))
    earlier = view.earlier(row, DONE, negate=True)
    if earlier:
        day = min(r.position for r in earlier)
        first = sorted((r for r in earlier if r.position == day), key=lambda r: r.seq)
        names = ", ".join(f"{_rel(r.id, bf)} ({r.status})" for r in first[:3])
        more = f" and {len(first) - 3} more" if len(first) > 3 else ""
        out.append(Wait("group", f"an earlier date of its group {row.group}: {names}{more}", first[0].id))
    if out:
        return out
    running, active = view.active()
    others = [name for name in active if name != bf]
    if not apply_running:
        again = "the next apply recovers and runs it" if row.status == "waiting" else "`backfill apply` runs it"
        out.append(Wait("apply", f"an apply: none is running; {again}"))
    elif row.status == "pending" and others:
        out.append(Wait("backfill", f"the running apply runs backfill {', '.join(others)} first"))
    elif len(running) >= project.max_parallel:
        names = ", ".join(_rel(r.id, bf) for r in running[:3]) + (" ..." if len(running) > 3 else "")
        out.append(Wait("slot", f"a concurrency slot: {len(running)} of max_parallel {project.max_parallel} "
                                f"running ({names})"))
    else:
        out.append(Wait("worker", "a worker: it is ready and queued to start"))
    return out


def _blocker(view: _Ledger, r: InstanceRow) -> InstanceRow | None:
    err = r.error or ""
    m = _UPSTREAM.match(err)
    if m:
        return view.get(m.group(1))
    if err.startswith(EARLIER):
        earlier = view.earlier(r, BAD, skip_group_blocked=True)
        if earlier:
            day = max(x.position for x in earlier)
            return min((x for x in earlier if x.position == day), key=lambda x: (x.status == "blocked", x.seq))
    bad = [view.get(u) for u in r.upstream]
    return next((u for u in bad if u is not None and u.status in BAD), None)


def _chain(view: _Ledger, row: InstanceRow) -> list[Link]:
    out: list[Link] = []
    seen = {row.id}
    cur = row
    while cur.status == "blocked":
        nxt = _blocker(view, cur)
        if nxt is None or nxt.id in seen:
            break
        seen.add(nxt.id)
        out.append(Link(nxt.id, nxt.status, nxt.error))
        cur = nxt
    return out


def _stale(view: _Ledger, project: Project, reads: Sequence[Read]) -> list[str]:
    return stale_reasons(view.ledger, project, view.row, reads,
                         lambda iid: up.ds if (up := view.get(iid)) is not None else None)


def _last_attempt(ledger: Ledger, row: InstanceRow) -> dict[str, Any] | None:
    attempts = ledger.attempts(row.id)
    if not attempts:
        return None
    a = attempts[-1]
    error = next((line for line in (a.get("error") or "").splitlines() if line.strip()), None)
    return {"number": a["number"], "status": a["status"], "started_at": a["started_at"], "ended_at": a["ended_at"],
            "pid": a["pid"], "host": a["host"], "error": error}


def _dry_run(view: _Ledger, project: Project) -> str:
    """What a dry-run instance's partition holds: it wrote nothing, so only an earlier write, if any."""
    row = view.row
    tfps = {tfp for _t, _f, tfp, dss in view.ledger.partition_groups(row.table) if row.ds in dss}
    if not tfps:
        return "dry_run: not executed; the partition is missing"
    table = project.tables.get(row.table)
    now = template_fingerprint(table, project) if table is not None else None
    changed = " (stale: its table's spec changed since)" if any(t and t != now for t in tfps) else ""
    return f"dry_run: not executed; the partition holds data from an earlier write{changed}"


def _summary(row: InstanceRow, waits: Sequence[Wait], chain: Sequence[Link], stale: Sequence[str],
             dry_run: str = "") -> str:
    bf = row.backfill
    if row.status == "dry_run" and dry_run:
        return dry_run
    if row.status in ACTIVE and row.status != "running":
        return f"{row.status}: for {waits[0].detail}" if waits else row.status
    if row.status == "running":
        return "running"
    if row.status == "blocked" and chain:
        root = chain[-1]
        return f"blocked: root cause {_rel(root.id, bf)} {root.status}"
    if row.status in BAD:
        return f"{row.status}" + (f": {row.error}" if row.error else "")
    if stale:
        return f"{row.status}, stale: {stale[0]}"
    return f"{row.status}, current"


def diagnose(ledger: Ledger, project: Project, instance_id: str, graph: Mapping[str, Sequence[str]],
             now: float) -> Diagnosis | None:
    row = ledger.instance(instance_id)
    if row is None:
        return None
    view = _Ledger(ledger, row)
    holder = ledger.lock_holder()
    runtime = next((b["runtime"] for b in ledger.backfills() if b["name"] == row.backfill), None)
    reads = _reads(view, project, graph)
    waits = _waits(view, project, runtime, bool(holder and holder["alive"]), now) if row.status in ACTIVE \
        and row.status != "running" else []
    chain = _chain(view, row)
    stale = _stale(view, project, reads)
    root = ledger.instance(chain[-1].id) if chain else None
    return Diagnosis(row.id, row.backfill, row.status, row.group, row.mode, row.held,
                     _summary(row, waits, chain, stale, _dry_run(view, project) if row.status == "dry_run" else ""),
                     reads, waits, chain, stale, _last_attempt(ledger, row),
                     f"backfill logs {row.id}", _last_attempt(ledger, root) if root else None)
