"""Alibaba Dataphin / DataWorks scheduling parameters inside SQL templates.

`${...}` reads the business date (bizdate, the data timestamp); `$[...]` reads the scheduled time
(cyctime: bizdate + 1 day at 00:00:00 for a daily table, the data timestamp + 1 hour for an hourly one).
The caller passes both datetimes; this module only finds, checks and computes the parameters.

Left alone (not parameters): `$` before a Jinja opener (`${{`, `${%`, `${#`), `$` before anything but
`{`, `[` or a bare name, and `$[` not followed by a letter (JSON paths such as `'$[0]'` or `'$[*]'`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

__all__ = ["SchedParam", "SchedParamError", "evaluate", "find_params", "substitute"]

Base = Literal["biz", "cyc"]
Unit = Literal["years", "months", "days", "hours", "minutes"]

_TOKENS = ("yyyy", "hh24", "yy", "mm", "dd", "mi", "ss")  # longest first where prefixes overlap
_NOT_SEPARATORS = frozenset("${}[]()'\"`\\,*+\n\r\t")
_BARE: dict[str, tuple[Base, str]] = {
    "bizdate": ("biz", "yyyymmdd"),
    "cyctime": ("cyc", "yyyymmddhh24miss"),
    "gmtdate": ("cyc", "yyyymmdd"),
}
_LETTER = re.compile(r" *[A-Za-z]")
_BARE_RE = re.compile(r"\$(bizdate|cyctime|gmtdate)(?![A-Za-z0-9_])")
_NUM = r"(\d+)(?:\s*\*\s*(\d+))?"
_BRACE_TAIL = re.compile(r"\s*([+-])\s*" + _NUM + r"\s*$")
_BRACKET_TAIL = re.compile(r"\s*([+-])\s*" + _NUM + r"(?:\s*/\s*(\d+)(?:\s*/\s*(\d+))?)?\s*$")
_ADD_MONTHS = re.compile(r"add_months\s*\(\s*([^,()]*?)\s*,\s*([+-]?)\s*" + _NUM + r"\s*\)$", re.I)

_TOKEN_HELP = "format tokens are yyyy, yy, mm (month), dd, hh24, mi (minute), ss, joined by separators"
_BRACE_FORMS = "accepted: ${yyyymmdd}, ${yyyy-mm-dd}, ${yyyymmdd-N}, ${yyyymmdd+N}, ${yyyymmdd-7*N}, " \
    "${yyyy-mm-N} (months), ${yyyy-N} (years), ${bizdate}"
_BRACKET_FORMS = "accepted: $[yyyymmdd], $[yyyymmdd-N] (days), $[hh24miss-N/24] (hours), " \
    "$[hh24miss-N/24/60] (minutes), $[add_months(yyyymmdd,-N)]"


@dataclass(frozen=True)
class SchedParam:
    """One scheduling parameter found in a template."""

    start: int  # offset in the template text where the parameter begins
    end: int  # offset just past its end
    text: str  # the whole original text, e.g. "${yyyymmdd-7}"
    base: Base  # which clock it reads: business date or scheduled time
    fmt: str  # the format part, e.g. "yyyymmdd"
    amount: int  # signed offset
    unit: Unit


class SchedParamError(ValueError):
    """A `${...}` or `$[...]` form that cannot be understood."""

    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset = offset
        self.message = message


@lru_cache(maxsize=512)
def _tokens(fmt: str) -> tuple[str, ...] | None:
    """`fmt` split into tokens and separator characters, or None if it is not a format."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        tok = next((t for t in _TOKENS if fmt.startswith(t, i)), None)
        if tok is None:
            c = fmt[i]
            if (c.isascii() and c.isalnum()) or c in _NOT_SEPARATORS:
                return None
            tok = c
        out.append(tok)
        i += len(tok)
    if "-" in (out[:1] + out[-1:]) or not any(t in _TOKENS for t in out):
        return None  # an edge "-" is a broken offset, not a separator
    return tuple(out)


def _count(sign: str, n: str, times: str | None) -> int:
    return (-1 if sign == "-" else 1) * int(n) * (int(times) if times else 1)


def _bad_offset(body: str) -> str | None:
    """The offset part of `body` if it is a valid format followed by a sign and something else."""
    for m in re.finditer(r"[+-]", body):
        fmt, rest = body[: m.start()].strip(), body[m.start() + 1 :].strip()
        if _tokens(fmt) and not any(rest.startswith(t) for t in _TOKENS):
            return body[m.start() :].strip()
    return None


def _split(body: str, tail: re.Pattern[str]) -> tuple[str, re.Match[str] | None]:
    m = tail.search(body)
    if m and _tokens(body[: m.start()].strip()):
        return body[: m.start()].strip(), m
    return body, None


def _parse_brace(body: str, text: str, start: int) -> tuple[str, int, Unit]:
    if body == "bizdate":
        return "yyyymmdd", 0, "days"
    if body.lower().startswith("add_months"):
        raise SchedParamError(start, f"add_months works only in $[...], not in {text}: "
                              "write $[add_months(yyyymmdd,-N)] (reads the scheduled time)")
    fmt, m = _split(body, _BRACE_TAIL)
    if _tokens(fmt) is None:
        bad = _bad_offset(body)
        if bad is not None:
            raise SchedParamError(start, f'bad offset "{bad}" in {text}: ${{...}} takes -N or +N with a '
                                  "whole number N (days, months or years by the format) or -7*N for weeks; "
                                  "for hours or minutes use $[hh24miss-N/24] or $[hh24miss-N/24/60]")
        raise SchedParamError(start, f'unknown format "{body}" in {text}: {_TOKEN_HELP}; {_BRACE_FORMS}')
    toks = set(_tokens(fmt) or ())
    unit: Unit = ("days" if "dd" in toks else "months" if "mm" in toks
                  else "years" if toks & {"yyyy", "yy"} else "days")
    if m is None:
        return fmt, 0, unit
    if not toks & {"dd", "mm", "yyyy", "yy"}:
        raise SchedParamError(start, f"an offset in {text} needs a date part (dd, mm or yyyy) in the format "
                              "to count in; for hours or minutes use $[hh24miss-N/24] or $[hh24miss-N/24/60]")
    return fmt, _count(m.group(1), m.group(2), m.group(3)), unit


def _parse_bracket(body: str, text: str, start: int) -> tuple[str, int, Unit]:
    if body.lower().startswith("add_months"):
        am = _ADD_MONTHS.match(body)
        if am is None or _tokens(am.group(1)) is None:
            raise SchedParamError(start, f"bad add_months call {text}: write $[add_months(yyyymmdd,-N)] or "
                                  f"$[add_months(yyyymmdd,N)] with a whole number N; {_TOKEN_HELP}")
        return am.group(1), _count(am.group(2), am.group(3), am.group(4)), "months"
    fmt, m = _split(body, _BRACKET_TAIL)
    if _tokens(fmt) is None:
        bad = _bad_offset(body)
        if bad is not None:
            raise SchedParamError(start, f'bad offset "{bad}" in {text}: $[...] takes -N or +N days, '
                                  f"-N/24 hours or -N/24/60 minutes with a whole number N; {_BRACKET_FORMS}")
        raise SchedParamError(start, f'unknown format "{body}" in {text}: {_TOKEN_HELP}; {_BRACKET_FORMS}')
    if m is None:
        return fmt, 0, "days"
    amount = _count(m.group(1), m.group(2), m.group(3))
    divisors = (m.group(4), m.group(5))
    if divisors == (None, None):
        return fmt, amount, "days"
    if divisors == ("24", None):
        return fmt, amount, "hours"
    if divisors == ("24", "60"):
        return fmt, amount, "minutes"
    raise SchedParamError(start, f'bad divisor in {text}: write -N/24 for hours or -N/24/60 for minutes; '
                          f"{_BRACKET_FORMS}")


def find_params(text: str) -> list[SchedParam]:
    """Every scheduling parameter in `text`, in order; raises SchedParamError for a `${`/`$[` form it
    cannot understand (e.g. `${yyyymmdd-x}`, `${abc}`, an unclosed `${`)."""
    out: list[SchedParam] = []
    i = text.find("$")
    while i != -1:
        nxt = text[i + 1 : i + 2]
        end = i + 1
        if nxt in ("{", "[") and not (nxt == "{" and text[i + 2 : i + 3] in ("{", "%", "#")):
            body_start = i + 2
            if nxt == "[" and not _LETTER.match(text, body_start):
                i = text.find("$", end)  # a JSON path such as '$[0]', not ours
                continue
            close = "}" if nxt == "{" else "]"
            stop = re.compile(re.escape(close) + r"|\n").search(text, body_start)
            if stop is None or stop.group() == "\n":
                frag = text[i : stop.start() if stop else len(text)].rstrip()
                example = "${yyyymmdd}" if close == "}" else "$[yyyymmdd]"
                raise SchedParamError(i, f'unclosed scheduling parameter "{frag}": close it with "{close}" '
                                      f"on the same line, e.g. {example}")
            end = stop.end()
            whole, body = text[i:end], text[body_start : stop.start()].strip()
            if nxt == "{":
                fmt, amount, unit = _parse_brace(body, whole, i)
            else:
                fmt, amount, unit = _parse_bracket(body, whole, i)
            out.append(SchedParam(i, end, whole, "biz" if nxt == "{" else "cyc", fmt, amount, unit))
        else:
            bare = _BARE_RE.match(text, i)
            if bare is not None:
                end = bare.end()
                base, fmt = _BARE[bare.group(1)]
                out.append(SchedParam(i, end, bare.group(), base, fmt, 0, "days"))
        i = text.find("$", end)
    return out


def _add_months(dt: datetime, months: int) -> datetime:
    """`dt` moved by whole months, the day clamped to the target month's last day."""
    y, m = divmod(dt.year * 12 + dt.month - 1 + months, 12)
    if not 1 <= y <= 9999:
        raise OverflowError(f"date out of range moving {dt.date().isoformat()} by {months} months")
    return dt.replace(year=y, month=m + 1, day=min(dt.day, calendar.monthrange(y, m + 1)[1]))


def _shift(dt: datetime, amount: int, unit: Unit) -> datetime:
    if unit in ("years", "months"):
        return _add_months(dt, amount * (12 if unit == "years" else 1))
    if unit == "days":
        return dt + timedelta(days=amount)
    if unit == "hours":
        return dt + timedelta(hours=amount)
    return dt + timedelta(minutes=amount)


def evaluate(param: SchedParam, bizdate: datetime, cyctime: datetime) -> str:
    """The parameter's value as text."""
    toks = _tokens(param.fmt)
    if toks is None:
        raise SchedParamError(param.start, f'unknown format "{param.fmt}" in {param.text}: {_TOKEN_HELP}')
    dt = _shift(bizdate if param.base == "biz" else cyctime, param.amount, param.unit)
    parts = {"yyyy": f"{dt.year:04d}", "yy": f"{dt.year % 100:02d}", "mm": f"{dt.month:02d}",
             "dd": f"{dt.day:02d}", "hh24": f"{dt.hour:02d}", "mi": f"{dt.minute:02d}",
             "ss": f"{dt.second:02d}"}
    return "".join(parts.get(t, t) for t in toks)


def substitute(text: str, bizdate: datetime, cyctime: datetime) -> str:
    """Convenience: every parameter replaced by its value."""
    out: list[str] = []
    pos = 0
    for p in find_params(text):
        out += [text[pos : p.start], evaluate(p, bizdate, cyctime)]
        pos = p.end
    out.append(text[pos:])
    return "".join(out)
