"""The project model: frozen, validated, and free of I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "Backfill",
    "DateInterval",
    "EngineConfig",
    "Field",
    "Project",
    "Retries",
    "Scope",
    "StateConfig",
    "Table",
    "Target",
    "Selection",
]

Kind = Literal["integration", "dimension", "fact", "aggregate"]
Granularity = Literal["day", "hour"]
# `none`, `all`, or the named tables
Selection = tuple[str, ...] | Literal["none", "all"]


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    description: str = ""


@dataclass(frozen=True)
class Template:
    """A Jinja SQL template and where its text starts, for error locations."""

    source: str
    file: str  # project-relative path shown in errors
    line_offset: int = 0  # template line 1 is file line 1 + line_offset
    col_offset: int = 0
    exact: bool = True  # False: the text does not map onto the file (a folded YAML value): its start is shown

    def at(self, line: int, col: int) -> tuple[int, int]:
        """The file position of the template's line and column."""
        if not self.exact:
            return self.line_offset + 1, self.col_offset + 1
        return line + self.line_offset, col + self.col_offset


@dataclass(frozen=True)
class Table:
    name: str
    kind: Kind
    fields: tuple[Field, ...]
    template: Template
    spec_file: str
    granularity: Granularity = "day"
    partition: str = "ds"
    primary_key: tuple[str, ...] = ()
    depends_on: tuple[str, ...] | None = None
    description: str = ""
    timeout: float | None = None  # seconds one instance's SQL may run (None: the project's default)
    batch_size: int = 1  # consecutive partitions (days, or hours) written by one statement
    # where each top-level key's value stands in the spec file (line, col), for error locations
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def hourly(self) -> bool:
        return self.granularity == "hour"


@dataclass(frozen=True)
class EngineConfig:
    type: Literal["duckdb", "postgres"] = "duckdb"
    path: str = ".backfill/warehouse.duckdb"
    url_env: str | None = None
    schema: str = "public"
    threads: int | None = None

    @property
    def dialect(self) -> str:
        return self.type


@dataclass(frozen=True)
class StateConfig:
    path: str | None = ".backfill/state.db"
    url_env: str | None = None
    schema: str | None = None


@dataclass(frozen=True)
class Retries:
    count: int = 0
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class Target:
    table: str
    fields: tuple[str, ...] | None = None  # None: the entire table
    batch_size: int | None = None  # None: the table's own batch_size


@dataclass(frozen=True)
class Scope:
    mode: Literal["current", "downstream"] = "current"
    depth: int | None = None
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class DateInterval:
    """Inclusive interval of data timestamps. An end that names a day (not an hour) covers the whole
    day for hourly tables: `{start: 2026-07-01T22, end: 2026-07-02}` runs through 2026-07-02T23."""

    start: datetime
    end: datetime
    hourly: bool = False  # both ends name hours (shorthand for the two flags below)
    start_hour: bool | None = None  # the start names an hour (default: `hourly`)
    end_hour: bool | None = None

    @property
    def start_names_hour(self) -> bool:
        return self.hourly if self.start_hour is None else self.start_hour

    @property
    def end_names_hour(self) -> bool:
        return self.hourly if self.end_hour is None else self.end_hour


@dataclass(frozen=True)
class Backfill:
    key: str  # the spec file's stem: stable identity of the request in git
    spec_file: str
    targets: tuple[Target, ...]
    name: str | None = None  # None: default name is given at plan time
    scope: Scope = Scope()
    runtime: datetime | None = None  # None: immediately
    data_timestamp: tuple[DateInterval, ...] | None = None  # None: yesterday
    groups: int = 1
    order: Literal["ascending", "descending"] = "ascending"
    skip: Selection = "none"
    dry_run: Selection = "none"
    params: Mapping[str, Any] = field(default_factory=dict)
    retries: Retries | None = None
    data_timestamp_at: tuple[int, int] = field(default=(1, 1), compare=False)  # line, col in the spec file


@dataclass(frozen=True)
class Project:
    name: str
    root: Path
    tables: Mapping[str, Table]
    backfills: Mapping[str, Backfill]
    dialect: str = "duckdb"
    engine: EngineConfig = EngineConfig()
    state: StateConfig = StateConfig()
    max_parallel: int = 4
    retries: Retries = Retries()
    params: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ("data",)  # folders whose files templates may read through source()
    allow_functions: tuple[str, ...] = ()  # SQL functions allowed beyond the dialect's allow-list
    timeout: float = 3600.0  # default seconds one instance's SQL may run
    work_pool: str | None = None  # `executor: {work_pool: NAME}`: group flow runs on that pool's workers

    def backfill_by_name(self, name: str) -> Backfill | None:
        for b in self.backfills.values():
            if b.name == name or b.key == name:
                return b
        return None
