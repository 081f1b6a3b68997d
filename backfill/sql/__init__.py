"""Stage 2, sql: a table's template and a data timestamp in, checked SQL out.

Enters: `spec.model` tables and a render context (date, params).
Leaves: rendered SQL per instance, checked once per *shape* with sqlglot (one SELECT, declared
tables and columns, projection equal to the declared fields), transpiled to the engine dialect,
with its dependencies and field lineage.
Here: the sandbox (`sandbox`), the variables (`context`), quoting (`quoting`), the template
(`templates`), Dataphin parameters (`dataphin`), date filling (`datefill`), sqlglot checks
(`sqlcheck`), field lineage (`fields`), and the per-project compiler (`compiler`).
"""
