"""Read-set formulas and their evaluation: which partitions a formula lets through.

A formula (`Cmp`, `All`, `Any_`, `TRUE`) is what `reads.infer_reads` finds about one table's partition
column; `evaluate` turns it into sorted disjoint intervals for one instance (`fill` puts the instance's
dates into the literal texts), `as_ranges` into inclusive ranges of partition ds texts or "all".
`conjunction_ranges` does both at once for a plain conjunction (the usual `=` or BETWEEN), faster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

__all__ = ["All", "Any_", "Cmp", "TRUE", "Formula", "as_ranges", "conj", "conjunction", "conjunction_ranges",
           "disj", "evaluate", "parse_moment"]


@dataclass(frozen=True)
class Cmp:
    op: str  # eq, lt, le, gt, ge
    text: str  # the literal as written (placeholders filled per instance)
    unit: str = ""  # "day" when the partition column is cast to DATE; "" = the table's own granularity
    shift_hours: int = 0  # from `± INTERVAL`
    day_value: bool = False  # the literal is cast to DATE: its time of day is dropped


@dataclass(frozen=True)
class All:
    parts: tuple[Formula, ...]


@dataclass(frozen=True)
class Any_:
    parts: tuple[Formula, ...]


@dataclass(frozen=True)
class _True:
    pass


TRUE = _True()
Formula = Cmp | All | Any_ | _True


def conj(parts: list[Formula]) -> Formula:
    kept = tuple(dict.fromkeys(p for p in parts if p is not TRUE))
    return TRUE if not kept else kept[0] if len(kept) == 1 else All(kept)


def disj(parts: list[Formula]) -> Formula:
    if not parts or any(p is TRUE for p in parts):
        return TRUE
    kept = tuple(dict.fromkeys(parts))
    return kept[0] if len(kept) == 1 else Any_(kept)


# ------------------------------------------------------------------------------------------ evaluation
Interval = tuple[int | None, int | None]  # inclusive, in days (toordinal) or hours; None = unbounded
_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H",
            "%Y-%m-%d %H", "%Y%m%d%H", "%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S.%f")


@lru_cache(maxsize=65536)
def parse_moment(text: str) -> datetime | None:
    for f in _FORMATS:
        try:
            return datetime.strptime(text.strip(), f)
        except ValueError:
            continue
    return None


def _cmp_interval(c: Cmp, hourly: bool, fill: Callable[[str], str]) -> list[Interval] | None:
    found = _interval(c.op, fill(c.text), c.unit, c.shift_hours, c.day_value, hourly)
    return None if found is None else [found]


@lru_cache(maxsize=65536)
def _interval(op: str, text: str, unit: str, shift_hours: int, day_value: bool, hourly: bool) -> Interval | None:
    moment = parse_moment(text)
    if moment is None:
        return None
    if day_value:
        moment = datetime.combine(moment.date(), datetime.min.time())
    hours = moment.toordinal() * 24 + moment.hour + shift_hours
    exact = moment.minute == 0 and moment.second == 0 and moment.microsecond == 0
    per = 1 if hourly and unit != "day" else 24
    floor, exact = divmod(hours, per)[0], exact and hours % per == 0
    lo: int | None
    hi: int | None
    lo, hi = {"eq": (floor, floor), "ge": (floor if exact else floor + 1, None), "gt": (floor + 1, None),
              "le": (None, floor), "lt": (None, floor - 1 if exact else floor)}[op]
    if hourly and per == 24:  # a DATE bound on an hourly partition: every hour of those days
        lo, hi = (None if lo is None else lo * 24), (None if hi is None else hi * 24 + 23)
    return (lo, hi)


def conjunction(f: Formula) -> list[Cmp] | None:
    """The comparisons of a plain conjunction (the usual `=` or BETWEEN), None for anything else."""
    if f is TRUE:
        return []
    if isinstance(f, Cmp):
        return [f]
    if isinstance(f, All) and all(isinstance(p, Cmp) for p in f.parts):
        return [p for p in f.parts if isinstance(p, Cmp)]
    return None


def conjunction_ranges(cmps: list[tuple[Cmp, str]], hourly: bool) -> tuple[tuple[str | None, str | None], ...] | str:
    """`as_ranges(evaluate(...))` of a conjunction whose literals are filled in already, faster."""
    lo: int | None = None
    hi: int | None = None
    for c, text in cmps:
        iv = _interval(c.op, text, c.unit, c.shift_hours, c.day_value, hourly)
        if iv is None:
            continue
        if iv[0] is not None and (lo is None or iv[0] > lo):
            lo = iv[0]
        if iv[1] is not None and (hi is None or iv[1] < hi):
            hi = iv[1]
    if lo is None and hi is None:
        return "all"
    if lo is not None and hi is not None and lo > hi:
        return ()
    return ((None if lo is None else _ds(lo, hourly), None if hi is None else _ds(hi, hourly)),)


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out = []
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo = lo2 if lo1 is None else lo1 if lo2 is None else max(lo1, lo2)
            hi = hi2 if hi1 is None else hi1 if hi2 is None else min(hi1, hi2)
            if lo is None or hi is None or lo <= hi:
                out.append((lo, hi))
    return _union(out)


def _union(parts: list[Interval]) -> list[Interval]:
    key = sorted(parts, key=lambda iv: -10**12 if iv[0] is None else iv[0])
    out: list[Interval] = []
    for lo, hi in key:
        if out:
            plo, phi = out[-1]
            if phi is None or (lo is not None and lo <= phi + 1):
                out[-1] = (plo, None if phi is None or hi is None else max(phi, hi))
                continue
        out.append((lo, hi))
    return out


def evaluate(f: Formula, hourly: bool, fill: Callable[[str], str]) -> list[Interval]:
    """The partitions `f` lets through, as sorted disjoint intervals ([(None, None)]: all)."""
    if isinstance(f, Cmp):
        found = _cmp_interval(f, hourly, fill)
        return [(None, None)] if found is None else found
    if isinstance(f, All):
        acc: list[Interval] = [(None, None)]
        for p in f.parts:
            acc = _intersect(acc, evaluate(p, hourly, fill))
        return acc
    if isinstance(f, Any_):
        return _union([iv for p in f.parts for iv in evaluate(p, hourly, fill)])
    return [(None, None)]


@lru_cache(maxsize=262144)
def _ds(n: int, hourly: bool) -> str:
    if hourly:
        day, hour = divmod(n, 24)
        return f"{date.fromordinal(day).isoformat()}T{hour:02d}"
    return date.fromordinal(n).isoformat()


def as_ranges(intervals: list[Interval], hourly: bool) -> tuple[tuple[str | None, str | None], ...] | str:
    """Intervals as inclusive ranges of partition ds texts (None: unbounded), or "all"."""
    if intervals == [(None, None)]:
        return "all"
    return tuple((None if lo is None else _ds(lo, hourly), None if hi is None else _ds(hi, hourly))
                 for lo, hi in intervals)
