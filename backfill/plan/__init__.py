"""Stage 4, plan: a project and a ledger snapshot in, a reviewable plan out. Pure, no warehouse.

Enters: `spec.model.Project`, compiled SQL from `sql`, a `LedgerView` read from `state`.
Leaves: `planner.BackfillPlan` per backfill (instances, groups, order, SQL, action and reason),
and the views of it: `explain` (text/json/markdown), `status`, `gitdiff` (the specs at a revision
read by `gitread`) + `diffexplain`.
Here too: `validate` (every check of a project), `dag` (table order), `dates` (a backfill's dates
and groups), `workspace` (load + plan against the ledger, the entry point commands use).
"""
