"""Stage 5, run: plans in, warehouse partitions and ledger records out.

Enters: `plan.planner.BackfillPlan`s and a `state.ledger.Ledger`.
Leaves: written partitions (through `engines`) and their records in the ledger.
Here: `apply` (lock, recover, decide, record, execute), `decide` (pure: what runs), `records`
(the ledger writes of an apply), `lock` (one apply at a time), `scheduler` (instances in order on
a thread pool), `flow` (the Prefect flow around it), `writer` (batched ledger progress),
`operations` (rerun, kill, pause, set-success), and `engines` (DuckDB, PostgreSQL).
"""
