"""Stage 3, state: what has been written, by which SQL, and what is running.

Enters: a ledger URL (a SQLite file or PostgreSQL). Leaves: `ledger.Ledger`, the record of
backfills, instances, attempts, partition fingerprints, the lock and saved plans.
Here: the tables and schema version (`schema`), the queries (`ledger`), the lock (`lock`), and
template fingerprints (`fingerprints`). Knows nothing of plans or engines.
"""
