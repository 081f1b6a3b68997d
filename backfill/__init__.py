"""backfill: declarative, reviewable data backfills.

The public API is small: load and validate a project, plan its backfills against a ledger, and apply.
Importing this package does not import Prefect; only executing a backfill does.
"""

from __future__ import annotations

from .errors import SpecError, SpecErrors, UserError
from .model import Backfill, Project, Table
from .planner import BackfillPlan, LedgerView, PlannedInstance, plan_backfill
from .specs import load_project
from .validate import Validated, validate_project

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
