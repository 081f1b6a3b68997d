"""Where a project meets its ledger: build plans against recorded state, save and load plan files."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..spec.model import Project
from .across import stale_across_backfills
from .explain import plan_to_json
from .planner import BackfillPlan, LedgerView
from .readiness import Missing, check_readiness, failed_absent
from .validate import Validated, validate_project

__all__ = ["PlanResult", "build_plans", "ledger_exists", "ledger_url", "load_plan_file", "open_ledger",
           "specs_fingerprint"]


def ledger_url(project: Project) -> tuple[str, str | None]:
    st = project.state
    if st.url_env:
        url = os.environ.get(st.url_env)
        if not url:
            raise UserError(f"project.yaml: state.url_env names {st.url_env}, which is not set; "
                            "export it with the ledger's postgresql:// URL")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url, st.schema
    assert st.path is not None
    path = Path(st.path)
    if not path.is_absolute():
        path = project.root / path
    return f"sqlite:///{path.resolve()}", None


def ledger_exists(project: Project) -> bool:
    """Whether the project's ledger is there already (a PostgreSQL ledger always counts as there)."""
    return _ledger_exists(project)


def _ledger_exists(project: Project) -> bool:
    url, _ = ledger_url(project)
    return not url.startswith("sqlite:///") or Path(url[len("sqlite:///"):]).exists()


def open_ledger(project: Project, create: bool = True) -> Any:
    """The project's ledger (creating it if `create`), or None when it does not exist yet."""
    from ..state.ledger import Ledger

    if not create and not _ledger_exists(project):
        return None
    url, schema = ledger_url(project)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return Ledger.open(url, schema)


def view_of(ledger: Any) -> LedgerView:
    if ledger is None:
        return LedgerView()
    parts, insts, names, taken = ledger.view_data()
    columns = ledger.field_times()
    written = {k: max(v.values()) for k, v in columns.items()}
    by_day: dict[tuple[str, str], float] = {}
    for (table, ds), when in written.items():
        key = (table, ds[:10])
        by_day[key] = max(when, by_day.get(key, when))
    return LedgerView(partitions=parts, instances=insts, names=names, taken_names=taken, written=written,
                      written_day=by_day, columns_written=columns)


def specs_fingerprint(root: Path) -> str:
    """A digest of every spec and template file of the project (what a saved plan was made from)."""
    h = hashlib.sha256()
    for sub in ("project.yaml", "tables", "backfills", "sql"):
        p = root / sub
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class PlanResult:
    validated: Validated
    plans: tuple[BackfillPlan, ...]
    specs_fingerprint: str
    state_fingerprint: str  # "" when build_plans was not asked for it (`with_state`): never saved then
    missing: tuple[Missing, ...] = ()  # upstream partitions read but neither planned nor present
    # (table, ds) -> the recorded instance that did not succeed, of partitions not in the ledger: their
    # readers are blocked by that failure rather than computed from the missing partition (run/decide.py)
    failed_absent: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @property
    def plan_id(self) -> str:
        return hashlib.sha256(plan_to_json(self.plans).encode()).hexdigest()[:16]

    def save(self, out: Path) -> None:
        assert self.state_fingerprint, "build_plans(with_state=True) makes a plan that can be saved"
        extra = {"specs_fingerprint": self.specs_fingerprint, "state_fingerprint": self.state_fingerprint,
                 "plan_id": self.plan_id, "project": self.validated.project.name}
        out.write_text(plan_to_json(self.plans, extra))


def build_plans(root: Path, only: list[str] | None = None, today: date | None = None,
                ledger: Any = None, validated: Validated | None = None, with_state: bool = True) -> PlanResult:
    """The plans of the project at `root` against `ledger` (`validated`: the same selection already
    validated against an empty ledger; used only when `ledger` holds nothing either). `with_state`:
    fingerprint the ledger's state too, for a plan that is saved or checked against a saved one (it
    reads every partition and instance record: 5% of a no-op apply of 10,000 instances)."""
    from ..spec.loader import load_project

    project = load_project(root)
    own = ledger is None
    if own:
        ledger = open_ledger(project, create=False)
    try:
        view = view_of(ledger)
        if validated is None or not view.is_empty:
            validated = validate_project(root, today=today, ledger=view, only=only)
        state = ""
        if with_state:
            state = ledger.fingerprint_of_state() if ledger is not None else "empty"
    finally:
        if own and ledger is not None:
            ledger.close()
    plans = stale_across_backfills(validated.plans)
    failed = failed_absent(view)
    missing = check_readiness(validated.project, plans, view, validated.graph, failed)
    return PlanResult(replace(validated, plans=plans), plans, specs_fingerprint(root), state, tuple(missing), failed)


def load_plan_file(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a saved plan ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != "backfill-plan/1" or "plan_id" not in doc:
        raise UserError(f"{path}: not a saved plan; make one with `backfill plan --out FILE`")
    return doc
