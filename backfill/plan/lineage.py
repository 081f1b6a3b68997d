"""Partition lineage between instances: who writes what an instance reads, cycles, staleness.

Pure functions over read sets (sql/readsets.py): `WriteIndex` finds the instances writing the
partitions of a read set; `upstream_ids` is the `upstream` of an instance; `partition_cycle` finds a
cycle among a table's own partitions; `rewritten_after` says which read partition the ledger saw
written after the reader; `chain_note` says in words when the reads make groups wait for each other.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..sql.readsets import ReadSet, read_set_of

__all__ = ["WriteIndex", "WrittenTimes", "chain_note", "in_ranges", "oldest_write", "order_notes", "partition_cycle",
           "rewritten_after", "stale_by_reads", "upstream_among"]


def _slice(keys: Sequence[str], ranges: tuple[tuple[str | None, str | None], ...] | str) -> Iterable[int]:
    if isinstance(ranges, str):
        yield from range(len(keys))
        return
    for lo, hi in ranges:
        start = 0 if lo is None else bisect_left(keys, lo)
        end = len(keys) if hi is None else bisect_right(keys, hi)
        yield from range(start, end)


def in_ranges(ds: str, ranges: tuple[tuple[str | None, str | None], ...] | str) -> bool:
    if isinstance(ranges, str):
        return True
    return any((lo is None or lo <= ds) and (hi is None or ds <= hi) for lo, hi in ranges)


class WriteIndex:
    """Which instances write each partition: table -> sorted ds texts -> instance ids."""

    def __init__(self, writes: Iterable[tuple[str, str, str]]):  # (instance id, table, ds)
        by: dict[str, dict[str, list[str]]] = {}
        for iid, table, ds in writes:
            by.setdefault(table, {}).setdefault(ds, []).append(iid)
        self._keys = {t: sorted(m) for t, m in by.items()}
        self._ids = by
        self._found: dict[tuple[str, object], list[str]] = {}  # readers of one table often read the same range

    def tables(self) -> set[str]:
        return set(self._ids)

    def writers(self, table: str, ranges: tuple[tuple[str | None, str | None], ...] | str) -> list[str]:
        found = self._found.get((table, ranges))
        if found is None:
            found = self._found[(table, ranges)] = self._writers(table, ranges)
        return found

    def _writers(self, table: str, ranges: tuple[tuple[str | None, str | None], ...] | str) -> list[str]:
        keys = self._keys.get(table)
        if not keys:
            return []
        ids = self._ids[table]
        if len(ranges) == 1 and not isinstance(ranges, str):  # the usual case: one window
            lo, hi = ranges[0]
            start = 0 if lo is None else bisect_left(keys, lo)
            end = len(keys) if hi is None else bisect_right(keys, hi)
            return [i for k in keys[start:end] for i in ids[k]]
        return [i for n in _slice(keys, ranges) for i in ids[keys[n]]]

    def dates(self, table: str) -> list[str]:
        return self._keys.get(table, [])


def upstream_ids(own_id: str, reads: ReadSet, index: WriteIndex) -> list[str]:
    """The instances of `index` that write a partition of `reads` (never the instance itself), sorted."""
    if len(reads) == 1:
        out = index.writers(*reads[0])
    else:
        out = []
        for table, ranges in reads:
            out.extend(index.writers(table, ranges))
        out.sort()
    return [i for i in out if i != own_id] if own_id in out else list(out)


def upstream_among(rows: Sequence[Any]) -> dict[str, list[str]]:
    """Recorded instances (id, table, ds, upstream, reads) -> the ones among `rows` each depends on:
    its recorded upstream (the instances of the apply that recorded it) and every one of `rows` that
    writes a partition its recorded read set names (a later apply may have recorded the writer)."""
    index = WriteIndex((r.id, r.table, r.ds) for r in rows)
    ids = {r.id for r in rows}
    out: dict[str, list[str]] = {}
    for r in rows:
        ups = [u for u in r.upstream if u in ids]
        if r.reads:
            ups += upstream_ids(r.id, read_set_of(r.reads), index)
        out[r.id] = sorted(set(ups))
    return out


def partition_cycle(ids: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle [a, b, ..., a] among `ids` following `upstream` (a reads what b writes), or None."""
    wanted = set(ids)
    state: dict[str, int] = {}
    for start in ids:
        if start in state:
            continue
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(upstream.get(start, ())))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next((u for u in it if u in wanted and state.get(u) != 2), None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            else:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(upstream.get(nxt, ()))))
    return None


class WrittenTimes:
    """The ledger's last write time per partition, indexed per table for range queries."""

    def __init__(self, written: Mapping[tuple[str, str], float]):
        per: dict[str, list[tuple[str, float]]] = {}
        for (table, ds), when in written.items():
            per.setdefault(table, []).append((ds, when))
        self._keys: dict[str, list[str]] = {}
        self._times: dict[str, list[float]] = {}
        for table, rows in per.items():
            rows.sort()
            self._keys[table] = [r[0] for r in rows]
            self._times[table] = [r[1] for r in rows]

    def present(self, table: str) -> list[str]:
        return self._keys.get(table, [])


def rewritten_after(times: WrittenTimes, reads: ReadSet, mine: float) -> str:
    """`upstream ods_order 2026-07-03 rewritten after` for the first read partition written after
    `mine`, else ''."""
    for table, ranges in reads:
        keys = times._keys.get(table)
        if not keys:
            continue
        stamps = times._times[table]
        for n in _slice(keys, ranges):
            if stamps[n] > mine:
                return f"upstream {table} {keys[n]} rewritten after"
    return ""


def oldest_write(fields: Mapping[str, float], needed: Iterable[str] = ()) -> float | None:
    """When the oldest of the `needed` columns of a partition was written (all it holds without
    `needed`): a field's own write, else the whole partition's ('*'). A partition is only as current
    as its oldest column: a later field backfill leaves the other columns as they were computed."""
    whole = fields.get("*")
    times = [t for f in needed if (t := fields.get(f, whole)) is not None] or list(fields.values())
    return min(times) if times else None


def stale_by_reads(times: WrittenTimes, written: Mapping[tuple[str, str], float],
                   reads: Mapping[tuple[str, str], ReadSet]) -> dict[tuple[str, str], str]:
    """Partitions computed from inputs that changed since: (table, ds) -> why.

    `times`: when each partition was last written (any column); `written`: when each reader's oldest
    column was. Directly: a partition it read was written after it; transitively: a partition it read
    is stale. Partitions are visited in the order they were written, so what one read is decided first."""
    out: dict[tuple[str, str], str] = {}
    for key in sorted(reads, key=lambda k: written.get(k, 0.0)):
        mine = written.get(key)
        if mine is None:
            continue
        why = rewritten_after(times, reads[key], mine)
        if not why:
            for table, ranges in reads[key]:
                keys = times._keys.get(table, [])
                hit = next((keys[n] for n in _slice(keys, ranges) if (table, keys[n]) in out), None)
                if hit is not None:
                    why = f"upstream {table} {hit} is stale"
                    break
        if why:
            out[key] = why
    return out


def chain_note(group_of: Mapping[str, int], upstream: Mapping[str, Sequence[str]], groups: int) -> str:
    """In words, how reads across groups make groups wait for one another ('' when they do not)."""
    if groups < 2:
        return ""
    waits: dict[int, set[int]] = {}
    for iid, ups in upstream.items():
        g = group_of.get(iid)
        for u in ups:
            h = group_of.get(u)
            if g is not None and h is not None and h != g:
                waits.setdefault(g, set()).add(h)
    if not waits:
        return ""
    pairs = sorted((g, h) for g, hs in waits.items() for h in hs)
    chained = all((g, g - 1) in pairs for g in range(2, groups + 1)) or \
        all((g, g + 1) in pairs for g in range(1, groups))
    said = ", ".join(f"group {g} waits for group {h}" for g, h in pairs[:6]) + (" ..." if len(pairs) > 6 else "")
    if chained:
        return (f"the reads chain the dates across every group ({said}): groups cannot fully run in "
                "parallel; each starts what it can and waits for the partitions it reads")
    return f"some dates read partitions of other groups ({said}): those instances wait for them"


def order_notes(drafts: Sequence[Any], upstream: Mapping[str, Sequence[str]], groups: int) -> tuple[str, ...]:
    """In words: reads that make groups wait for one another, or dates run out of the chosen order.
    `drafts`: planned instances (id, group, position); `upstream`: id -> the ids it waits for."""
    where = {i.id: (i.group, i.position) for i in drafts}
    last: dict[int, int] = {}
    for i in drafts:
        last[i.group] = max(last.get(i.group, 0), i.position)
    # waits across groups show at the ends of a group (reads reach back or forward from there)
    first = {i.id: upstream[i.id] for i in drafts if i.position in (0, last[i.group])}
    notes = [chain_note({i: g for i, (g, _) in where.items()}, first, groups)]
    ahead = sorted({where[i][0] for i, ups in first.items() for u in ups
                    if where[u][0] == where[i][0] and where[u][1] > where[i][1]})
    if ahead:
        notes.append("in group(s) " + ", ".join(map(str, ahead)) + " some dates read partitions of dates that "
                     "come later in the chosen order: those run first, out of order")
    return tuple(n for n in notes if n)
