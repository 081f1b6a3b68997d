"""What a template sees for one instance: its date variables and the date arithmetic helpers."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import jinja2

from .quoting import DateText

__all__ = ["RenderContext", "add_hours", "add_months", "date_format", "ds_add", "fmt_date", "strftime"]

_YEAR = re.compile(r"%[%YF]")


def strftime(ts: date, fmt: str) -> str:
    """`ts.strftime(fmt)` with a four-digit year: the C library writes year 1 as `1`, not `0001`."""
    if ts.year >= 1000 or "%" not in fmt:
        return ts.strftime(fmt)
    year = f"{ts.year:04d}"
    pad = {"%%": "%%", "%Y": year, "%F": year + "-%m-%d"}
    return ts.strftime(_YEAR.sub(lambda m: pad[m.group()], fmt))


@lru_cache(maxsize=65536)
def fmt_date(ts: datetime, fmt: str) -> str:
    """`ts.strftime(fmt)`, cached: planning formats the same few thousand timestamps over and over."""
    return strftime(ts, fmt)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value)
    if len(text) == 8 and text.isdigit():
        return datetime.strptime(text, "%Y%m%d")
    return datetime.fromisoformat(text)


def _shift_months(d: datetime, months: int) -> datetime:
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    return d.replace(year=y, month=m, day=min(d.day, calendar.monthrange(y, m)[1]))


def _same_form(original: Any, shifted: datetime) -> DateText:
    text = str(original)
    if len(text) == 8 and text.isdigit():
        return DateText(fmt_date(shifted, "%Y%m%d"))
    if isinstance(original, datetime) or len(text) > 10:
        return DateText(fmt_date(shifted, "%Y-%m-%d %H:%M:%S"))
    return DateText(fmt_date(shifted, "%Y-%m-%d"))


@lru_cache(maxsize=65536)
def ds_add(value: Any, days: int) -> DateText:
    """`ds_add(ds, -7)`: the date n days away, in the same form (YYYY-MM-DD or YYYYMMDD)."""
    return _same_form(value, _as_datetime(value) + timedelta(days=int(days)))


@lru_cache(maxsize=65536)
def add_months(value: Any, months: int) -> DateText:
    return _same_form(value, _shift_months(_as_datetime(value), int(months)))


@lru_cache(maxsize=65536)
def add_hours(value: Any, hours: int) -> DateText:
    return DateText(strftime(_as_datetime(value) + timedelta(hours=int(hours)), "%Y-%m-%d %H:%M:%S"))


@lru_cache(maxsize=65536)
def date_format(value: Any, fmt: str) -> DateText:
    """strftime of a date; only digits and separators may come out."""
    out = strftime(_as_datetime(value), str(fmt))
    if not re.fullmatch(r"[0-9 :T/._-]*", out):
        raise jinja2.TemplateRuntimeError(f"date_format may only produce digits and separators, got {out!r}")
    return DateText(out)


@dataclass(frozen=True)
class RenderContext:
    """What a template sees, for one instance."""

    data_timestamp: datetime
    hourly: bool
    params: Mapping[str, Any]
    # a batch's first and last data timestamps, for range templates; None: this instance alone
    start: datetime | None = None
    end: datetime | None = None

    def variables(self) -> dict[str, Any]:
        ts = self.data_timestamp
        start, end = self.start or ts, self.end or ts
        v: dict[str, Any] = {
            "ds": DateText(fmt_date(ts, "%Y-%m-%d")),
            "start_ds": DateText(fmt_date(start, "%Y-%m-%d")),
            "end_ds": DateText(fmt_date(end, "%Y-%m-%d")),
            "ds_nodash": DateText(fmt_date(ts, "%Y%m%d")),
            "bizdate": DateText(fmt_date(ts, "%Y%m%d")),
            "data_timestamp": ts,
            "params": self.params,
        }
        if self.hourly:
            v.update(hour=DateText(fmt_date(ts, "%H")), ts=DateText(fmt_date(ts, "%Y-%m-%d %H:%M:%S")),
                     ts_nodash=DateText(fmt_date(ts, "%Y%m%d%H%M%S")),
                     start_ts=DateText(fmt_date(start, "%Y-%m-%d %H:%M:%S")),
                     end_ts=DateText(fmt_date(end, "%Y-%m-%d %H:%M:%S")))
        return v

    def cyctime(self) -> datetime:
        return self.data_timestamp + (timedelta(hours=1) if self.hourly else timedelta(days=1))
