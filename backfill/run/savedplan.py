"""A saved plan (`backfill plan --out FILE`, then `backfill apply FILE`): applied once, and only while
the specs and the ledger are what it was made from."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..plan.workspace import PlanResult, build_plans, ledger_exists, load_plan_file, specs_fingerprint
from ..spec.model import Project
from ..state.ledger import Ledger

__all__ = ["check_saved_plan", "check_saved_plan_first", "saved_plan_keys"]


def check_saved_plan_first(root: Path, plan_file: Path, project: Project, today: date | None) -> None:
    """Before an apply creates anything: where no ledger exists yet, every check of the saved plan
    (specs, state, what it plans), so a refused plan leaves no ledger and no warehouse behind."""
    doc = _made_from_these_specs(root, plan_file)
    if ledger_exists(project):
        return  # checked under the lock, against the ledger (check_saved_plan)
    if doc.get("state_fingerprint") != "empty":
        raise UserError(f"{plan_file}: this plan was made against a ledger that is not there any more; "
                        "run `backfill plan --out` again")
    if doc.get("plan_id") != build_plans(root, _keys(doc) or None, today=today, with_state=False).plan_id:
        raise UserError(_NO_MATCH.format(plan_file))


_LEDGER_CHANGED = "{}: the ledger changed since this plan was made (another apply ran); run `backfill plan --out` again"
_NO_MATCH = "{}: this plan no longer matches what the specs plan to; make a new one"


def _made_from_these_specs(root: Path, plan_file: Path) -> dict[str, Any]:
    """The saved plan, refused at once if the specs changed since it was made."""
    doc = load_plan_file(plan_file)
    if doc.get("specs_fingerprint") != specs_fingerprint(root):
        raise UserError(f"{plan_file}: the specs changed since this plan was made; run `backfill plan --out` again")
    return doc


def _keys(doc: dict[str, Any]) -> list[str]:
    return [str(b["key"]) for b in doc.get("backfills", [])]


def saved_plan_keys(root: Path, plan_file: Path) -> list[str]:
    """The backfills a saved plan covers (refused at once if the specs changed since it was made)."""
    return _keys(_made_from_these_specs(root, plan_file))


def check_saved_plan(root: Path, plan_file: Path, ledger: Ledger, result: PlanResult) -> list[str]:
    doc = _made_from_these_specs(root, plan_file)
    if ledger.plan_applied(str(doc["plan_id"])):  # before the state check: its own apply changed the ledger
        raise UserError(f"{plan_file}: this plan was already applied; a saved plan can be applied once")
    made_on = doc.get("state_fingerprint")
    if made_on == "empty":  # saved before the ledger existed: apply has just created it, empty
        made_on = Ledger.empty_state_fingerprint()
    if made_on != ledger.fingerprint_of_state():
        raise UserError(_LEDGER_CHANGED.format(plan_file))
    if doc.get("plan_id") != result.plan_id:
        raise UserError(_NO_MATCH.format(plan_file))
    if not ledger.consume_plan(str(doc["plan_id"])):
        raise UserError(f"{plan_file}: this plan was already applied; a saved plan can be applied once")
    return [b["name"] for b in doc.get("backfills", [])]
