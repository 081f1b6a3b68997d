"""backfill: declarative, reviewable data backfills.

The public API is small: load and validate a project, plan its backfills against a ledger, and apply.
Importing this package does not import Prefect; only executing a backfill does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import SpecError, SpecErrors, UserError
    from .plan.planner import BackfillPlan, LedgerView, PlannedInstance, plan_backfill
    from .plan.validate import Validated, validate_project
    from .spec.loader import load_project
    from .spec.model import Backfill, Project, Table

_WHERE = {
    "SpecError": "errors", "SpecErrors": "errors", "UserError": "errors",
    "Backfill": "spec.model", "Project": "spec.model", "Table": "spec.model",
    "BackfillPlan": "plan.planner", "LedgerView": "plan.planner", "PlannedInstance": "plan.planner",
    "plan_backfill": "plan.planner", "load_project": "spec.loader",
    "Validated": "plan.validate", "validate_project": "plan.validate",
}


def __getattr__(name: str) -> Any:
    """Public names load on first use, so `import backfill.cli` stays light."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'backfill' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Backfill",
    "BackfillPlan",
    "LedgerView",
    "PlannedInstance",
    "Project",
    "SpecError",
    "SpecErrors",
    "Table",
    "UserError",
    "Validated",
    "load_project",
    "plan_backfill",
    "validate_project",
]
