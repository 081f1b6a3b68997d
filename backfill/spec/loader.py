"""Load a project folder into the model, collecting every error of every file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import SpecError, SpecErrors
from .model import (
    Backfill,
    EngineConfig,
    Field,
    Project,
    Retries,
    Scope,
    Selection,
    StateConfig,
    Table,
    Target,
    Template,
)
from .reserved import ledger_shares_warehouse, reserved_name_errors
from .schema_check import check_schema
from .sourcefolders import source_folder_errors
from .specfiles import inside as _inside
from .specfiles import relative as _rel
from .specfiles import spec_files as _spec_files
from .timestamps import read_intervals
from .yamlpos import Located, load_yaml_file, read_regular_text

__all__ = ["load_project"]

class _Loader:
    def __init__(self, root: Path):
        self.root = root
        self.errors: list[SpecError] = []
        self.broken: set[str] = set()  # names of specs that failed: no follow-on errors about them
        self.name_at: dict[str, tuple[int, int]] = {}  # spec file -> where its `name` value stands
        self.ledger_shared = False  # the ledger's tables live in the warehouse's schema (reserved.py)

    def read(self, path: Path, kind: str) -> Located | None:
        if not _inside(self.root, path):  # a link out of the project: not read, so nothing of it is shown
            self.errors.append(SpecError(f"{path.relative_to(self.root).as_posix()} leads out of the project "
                                         "folder through a symbolic link; keep spec files inside the project",
                                         file=path.relative_to(self.root).as_posix()))
            self.broken.add(path.stem)
            return None
        doc = load_yaml_file(path, _rel(self.root, path))
        if isinstance(doc, SpecError):
            self.errors.append(doc)
            self.broken.add(path.stem)
            return None
        if not isinstance(doc.value, dict):
            self.errors.append(doc.error((), f"a {kind} file must be a mapping of keys"))
            self.broken.add(path.stem)
            return None
        found = check_schema(doc, kind)
        self.errors.extend(found)
        if found:
            self.broken.add(path.stem)
            if isinstance(doc.value.get("name"), str):
                self.broken.add(doc.value["name"])
        return None if found else doc

    # ---- project.yaml
    def project_settings(self) -> dict[str, Any] | None:
        path = self.root / "project.yaml"
        if not path.exists():
            self.errors.append(SpecError(
                f"no project.yaml in {self.root}; run `backfill init DIR` or pass --project DIR",
                file="project.yaml"))
            return None
        doc = self.read(path, "project")
        if doc is None:
            return None
        v = doc.value
        eng = v.get("engine") or {"type": "duckdb"}
        engine = EngineConfig(type=eng["type"], path=eng.get("path", EngineConfig.path),
                              url_env=eng.get("url_env"), schema=eng.get("schema", "public"),
                              threads=eng.get("threads"))
        sources = tuple(str(s).rstrip("/") for s in v.get("sources", ["data"]))
        self.errors.extend(source_folder_errors(doc, self.root, sources))
        st = v.get("state", ".backfill/state.db")
        state = StateConfig(path=st, url_env=None) if isinstance(st, str) else \
            StateConfig(path=None, url_env=st["url_env"], schema=st.get("schema"))
        return {
            "name": v["name"], "dialect": v.get("dialect", "duckdb"), "engine": engine, "state": state,
            "max_parallel": v.get("max_parallel", 4), "retries": _retries(v.get("retries")) or Retries(),
            "params": v.get("params") or {},
            "sources": sources,
            "allow_functions": tuple(str(f).lower() for f in v.get("allow_functions", [])),
            "timeout": float(v.get("timeout", 3600)),
            "work_pool": (v.get("executor") or {}).get("work_pool"),
        }

    # ---- tables/*.yaml
    def table(self, path: Path) -> Table | None:
        doc = self.read(path, "table")
        if doc is None:
            return None
        v, file = doc.value, doc.file
        self.name_at[file] = doc.where(("name",))
        reserved = reserved_name_errors(doc, self.ledger_shared)
        if reserved:
            self.errors.extend(reserved)
            self.broken.update((path.stem, v["name"]))
            return None
        ok = True
        if "sql" in v:
            try:
                sql_path = (path.parent / v["sql"]).resolve()
            except (OSError, RuntimeError):
                sql_path = None
            problem = self.template_problem(sql_path, v["sql"], file)
            if problem is None and sql_path is not None:
                try:
                    text = read_regular_text(sql_path)
                except ValueError as exc:
                    problem = f"cannot read template file '{v['sql']}': {exc}"
            if problem is not None or sql_path is None:
                self.errors.append(doc.error(("sql",), problem or ""))
                self.broken.update((path.stem, v["name"]))
                return None
            template = Template(text, _rel(self.root, sql_path))
        else:
            key = ("sql_inline",)
            if key in doc.block_scalars:  # a literal block: line for line, from its content column
                line, col = doc.block_scalars[key]
                template = Template(v["sql_inline"], file, line_offset=line - 1, col_offset=col - 1)
            else:  # on the key's line (its quote, if any, before the text), or shown at its start
                line, col = doc.where(key)
                template = Template(v["sql_inline"], file, line_offset=line - 1,
                                    col_offset=col - 1 + (key in doc.quoted), exact=key not in doc.inexact)
        fields = tuple(Field(f["name"], f["type"], f.get("description", "")) for f in v["fields"])
        names = [f.name for f in fields]
        partition = v.get("partition", "ds")
        for i, name in enumerate(names):
            if names.index(name) != i:
                self.errors.append(doc.error(("fields", i, "name"), f"field '{name}' is declared twice; remove one"))
                ok = False
            if name == partition:
                self.errors.append(doc.error(("fields", i, "name"),
                                             f"'{name}' is the partition column; the tool adds it, do not declare it"))
                ok = False
        for i, key in enumerate(v.get("primary_key", [])):
            if key not in names:
                self.errors.append(doc.error(("primary_key", i), f"primary key '{key}' is not a declared field; "
                                             "declare it in fields or fix the name"))
                ok = False
        if not ok:
            self.broken.update((path.stem, v["name"]))
            return None
        return Table(
            name=v["name"], kind=v["kind"], fields=fields, template=template, spec_file=file,
            granularity=v.get("granularity", "day"), partition=partition,
            primary_key=tuple(v.get("primary_key", [])),
            depends_on=tuple(v["depends_on"]) if "depends_on" in v else None,
            description=v.get("description", ""),
            timeout=float(v["timeout"]) if "timeout" in v else None,
            batch_size=int(v.get("batch_size", 1)),
            positions={key: doc.where((key,)) for key in v},
        )

    def template_problem(self, sql_path: Path | None, given: str, file: str) -> str | None:
        """Why the template file a table names cannot be used, or None."""
        if sql_path is None:
            return f"template file '{given}' is a symbolic link loop; point sql: at a regular file"
        if not sql_path.is_relative_to(self.root.resolve()):
            return (f"template file '{given}' is outside the project folder; keep templates inside the project "
                    "(e.g. sql/)")
        if not sql_path.exists():
            return f"template file '{given}' not found (relative to {file})"
        return None

    # ---- backfills/*.yaml
    def backfill(self, path: Path, tables: dict[str, Table]) -> Backfill | None:
        doc = self.read(path, "backfill")
        if doc is None:
            return None
        v = doc.value
        self.name_at[doc.file] = doc.where(("name",))
        before = len(self.errors)
        targets = []
        for i, t in enumerate(v["targets"]):
            table = tables.get(t["table"])
            if table is None:
                if t["table"] not in self.broken:
                    self.errors.append(doc.error(("targets", i, "table"), _unknown_table(t["table"], tables)))
                continue
            fields = t.get("fields", "all")
            if fields != "all":
                for j, f in enumerate(fields):
                    if f not in table.field_names:
                        self.errors.append(doc.error(("targets", i, "fields", j),
                                                     f"table '{table.name}' has no field '{f}'"))
                if not table.primary_key:
                    self.errors.append(doc.error(
                        ("targets", i, "fields"),
                        f"table '{table.name}' has no primary_key, so it cannot take a field selection; "
                        "declare primary_key in its spec or backfill the entire table"))
            targets.append(Target(table.name, None if fields == "all" else tuple(fields), t.get("batch_size")))
        seen = [t.table for t in targets]
        for i, name in enumerate(seen):
            if seen.index(name) != i:
                self.errors.append(doc.error(("targets", i, "table"), f"table '{name}' is targeted twice"))
        scope = _scope(v.get("scope", "current"))
        for i, name in enumerate(scope.exclude):
            if name not in tables and name not in self.broken:
                self.errors.append(doc.error(("scope", "exclude", i), _unknown_table(name, tables)))
        for key in ("skip", "dry_run"):
            sel = v.get(key, "none")
            if isinstance(sel, list):
                for i, name in enumerate(sel):
                    if name not in tables and name not in self.broken:
                        self.errors.append(doc.error((key, i), _unknown_table(name, tables)))
        self.errors.extend(_skipped_and_dry_run(doc, v.get("skip", "none"), v.get("dry_run", "none")))
        intervals = read_intervals(doc, v.get("data_timestamp"), self.errors)
        runtime = None
        if v.get("runtime", "immediately") != "immediately":
            try:
                runtime = datetime.fromisoformat(v["runtime"].replace("Z", "+00:00"))
            except ValueError:
                self.errors.append(doc.error(("runtime",), f"'{v['runtime']}' is not a valid date and time"))
        if len(self.errors) > before:
            return None
        return Backfill(
            key=path.stem, spec_file=doc.file, targets=tuple(targets), name=v.get("name"), scope=scope,
            runtime=runtime, data_timestamp=intervals, groups=v.get("groups", 1),
            order=v.get("order", "ascending"), skip=_selection(v.get("skip", "none")),
            dry_run=_selection(v.get("dry_run", "none")), params=v.get("params") or {},
            retries=_retries(v.get("retries")),
            data_timestamp_at=doc.where(("data_timestamp",)) if "data_timestamp" in v else doc.where(()),
        )


def _unknown_table(name: str, tables: dict[str, Table]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(tables), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else "; declare it in tables/"
    return f"unknown table '{name}'{hint}"


def _skipped_and_dry_run(doc: Any, skip: Any, dry_run: Any) -> list[Any]:
    """A table named in both skip and dry_run, or both `all`: the two ask opposite outcomes (paused,
    a failure, or succeeded at once), so the spec has to pick one. A table named in one list wins
    over `all` in the other (`dry_run: all` with `skip: [c]`: everything dry-runs but c)."""
    fix = ("it cannot be both skipped (ends paused, blocks downstream) and dry-run (succeeds without "
           "running); remove it from skip or from dry_run")
    if skip == "all" and dry_run == "all":
        return [doc.error(("dry_run",), f"every table is in skip and in dry_run: {fix}")]
    if not isinstance(skip, list) or not isinstance(dry_run, list):
        return []
    return [doc.error(("dry_run", i), f"table '{name}' is in skip and in dry_run: {fix}")
            for i, name in enumerate(dry_run) if name in skip]


def _selection(raw: Any) -> Selection:
    return raw if isinstance(raw, str) else tuple(raw)  # type: ignore[return-value]


def _scope(raw: Any) -> Scope:
    if isinstance(raw, str):
        return Scope(mode=raw)  # type: ignore[arg-type]
    return Scope(mode=raw["mode"], depth=raw.get("depth"), exclude=tuple(raw.get("exclude", ())))


def _retries(raw: Any) -> Retries | None:
    if raw is None:
        return None
    return Retries(count=raw.get("count", 0), delay_seconds=float(raw.get("delay_seconds", 0)))


def load_project(root: str | Path) -> Project:
    """Read every spec file of the project; raise SpecErrors listing all problems found."""
    root = Path(root)
    loader = _Loader(root)
    settings = loader.project_settings()
    if settings is not None:
        loader.ledger_shared = ledger_shares_warehouse(settings["engine"], settings["state"])
    tables: dict[str, Table] = {}
    for path in _spec_files(root, "tables"):
        table = loader.table(path)
        if table is None:
            continue
        if table.name in tables:
            line, col = loader.name_at.get(table.spec_file, (1, 1))
            loader.errors.append(SpecError(
                f"table '{table.name}' is already declared in {tables[table.name].spec_file}; rename one of them",
                file=table.spec_file, line=line, col=col, key_path=("name",)))
            continue
        tables[table.name] = table
    backfills: dict[str, Backfill] = {}
    names: dict[str, str] = {}
    for path in _spec_files(root, "backfills"):
        bf = loader.backfill(path, tables)
        if bf is None:
            continue
        if bf.name and bf.name in names:
            line, col = loader.name_at.get(bf.spec_file, (1, 1))
            loader.errors.append(SpecError(f"backfill name '{bf.name}' is already used by {names[bf.name]}; "
                                           "give each backfill its own name",
                                           file=bf.spec_file, line=line, col=col, key_path=("name",)))
            continue
        if bf.name:
            names[bf.name] = bf.spec_file
        backfills[bf.key] = bf
    if loader.errors or settings is None:
        raise SpecErrors(loader.errors)
    return Project(root=root, tables=tables, backfills=backfills, **settings)
