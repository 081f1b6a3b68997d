"""Template fingerprints: what `status` compares to decide staleness without rendering per date.

A table's template fingerprint digests everything of its spec that the SQL of *every* partition
depends on: the template source, the write signature (fields and types, primary key, partition
column and type), its kind (integration SQL runs in DuckDB), the project dialect and the engine
type. It leaves out params (per backfill) and the dates, so it is computed once per table from the
specs alone, in microseconds.

The ledger records it with every partition written (`bf_partitions.template_fingerprint`), taken
from the instance as it was planned (`bf_instances.template_fingerprint`), so a rerun of old
recorded SQL is never mistaken for a current write.
"""

from __future__ import annotations

import hashlib

from ..spec.model import Project, Table

__all__ = ["template_fingerprint", "write_signature"]


def write_signature(table: Table) -> str:
    """The shape the tool writes (the same text as `ProjectCompiler.write_signature`)."""
    cols = ",".join(f"{f.name} {f.type}" for f in table.fields)
    part_type = "TIMESTAMP" if table.hourly else "DATE"
    return f"{cols}|pk={','.join(table.primary_key)}|{table.partition} {part_type}"


def template_fingerprint(table: Table, project: Project) -> str:
    h = hashlib.sha256()
    parts = ("template/1", table.template.source, write_signature(table), table.kind, project.dialect,
             project.engine.type)
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
