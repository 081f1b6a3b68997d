"""The ledger's tables and schema version: what is stored, created once and migrated.

Schema version 2 (v1 -> v2 adds the nullable `template_fingerprint` columns that `backfill status`
compares). `connect` opens a SQLAlchemy engine on a SQLite file or a PostgreSQL URL and makes sure
the schema is there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import UserError
from .faults import translate_errors

__all__ = ["ACTIVE", "FINISHED", "SCHEMA_VERSION", "InstanceRow", "connect", "ensure_schema", "instance_rows"]

SCHEMA_VERSION = 2
FINISHED = ("success", "dry_run", "failed", "paused", "blocked", "killed")
ACTIVE = ("pending", "waiting", "running")

meta = sa.MetaData()
T_META = sa.Table("bf_meta", meta, sa.Column("key", sa.String(64), primary_key=True),
                  sa.Column("value", sa.Text, nullable=False))
T_BACKFILLS = sa.Table(
    "bf_backfills", meta,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("spec_key", sa.String(256), nullable=False, index=True),
    sa.Column("spec_file", sa.Text, nullable=False),
    sa.Column("runtime", sa.String(40)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("in_specs", sa.Boolean, nullable=False, default=True),
)
T_INSTANCES = sa.Table(
    "bf_instances", meta,
    sa.Column("id", sa.String(400), primary_key=True),
    sa.Column("backfill", sa.String(128), nullable=False, index=True),
    sa.Column("table_name", sa.String(128), nullable=False),
    sa.Column("ds", sa.String(20), nullable=False),
    sa.Column("grp", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),
    sa.Column("fields", sa.Text),  # JSON list, or NULL for the entire table
    sa.Column("linked", sa.Text),
    sa.Column("upstream", sa.Text, nullable=False),  # JSON list of instance ids
    sa.Column("sql", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("table_fingerprint", sa.String(32), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("rows", sa.BigInteger),
    sa.Column("error", sa.Text),
    sa.Column("held", sa.Boolean, nullable=False, default=False),  # operator pause
    sa.Column("kill_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("run_id", sa.String(40)),  # the apply run that last claimed it (for crash recovery)
    sa.Column("template_fingerprint", sa.String(32)),  # v2: of the table's spec when planned (fingerprints.py)
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("batch", sa.String(400)),  # the batch it runs in (consecutive partitions, one statement); NULL: alone
    sa.Column("batch_sql", sa.Text),  # a range template's SELECT over the whole batch
    sa.Column("ranged", sa.Boolean),  # its SQL selects the partition column too (a range template)
    # JSON read set: {"table": [["2026-07-01", "2026-07-07"]]} (inclusive ds ranges, null = unbounded)
    # or {"table": "all"}; NULL = recorded before read sets existed
    sa.Column("reads", sa.Text),
    # the claim (claims.py): who executes it ("proc:HOST:PID" or "flow-run:UUID"), until when at least
    sa.Column("claimed_by", sa.String(80)),
    sa.Column("lease_until", sa.Float),
)
T_ATTEMPTS = sa.Table(
    "bf_attempts", meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("instance_id", sa.String(400), nullable=False, index=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(256)),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("rows", sa.BigInteger),
    sa.Column("error", sa.Text),
    sa.Column("log", sa.Text),
    sa.Column("sql", sa.Text),
)
T_PARTITIONS = sa.Table(
    "bf_partitions", meta,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("ds", sa.String(20), primary_key=True),
    sa.Column("field", sa.String(128), primary_key=True),  # '*' = every field of the table
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("instance_id", sa.String(400), nullable=False),
    sa.Column("written_at", sa.Float, nullable=False),
    sa.Column("template_fingerprint", sa.String(32)),  # v2: NULL = written before v2 (unknown)
)
T_LOCKS = sa.Table(
    "bf_locks", meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("flow_runs", sa.Text),  # JSON list of the Prefect flow run ids the holder launched (work pools)
)
T_PLANS = sa.Table(
    "bf_applied_plans", meta,
    sa.Column("plan_id", sa.String(64), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class InstanceRow:
    id: str
    backfill: str
    table: str
    ds: str
    group: int
    position: int
    seq: int
    mode: str
    fields: tuple[str, ...] | None
    linked: tuple[str, ...]
    upstream: tuple[str, ...]
    sql: str
    fingerprint: str
    table_fingerprint: str
    status: str
    attempts: int
    started_at: float | None
    ended_at: float | None
    rows: int | None
    error: str | None
    held: bool
    kill_requested: bool
    template_fingerprint: str | None = None
    run_id: str | None = None  # the apply run that last claimed it: its write markers start with it
    batch: str | None = None  # the batch it runs in with other partitions of its table
    batch_sql: str | None = None  # a range template's SELECT over the whole batch
    ranged: bool = False  # its SQL selects the partition column too (a range template)
    reads: dict[str, Any] | None = None  # its read set (see T_INSTANCES.reads); None = not recorded
    claimed_by: str | None = None  # the process or flow run executing it (claims.py)
    lease_until: float | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


_JSON_EMPTY = {None: None, "": None, "[]": ()}
_ROW_FIELDS = tuple(f.name for f in fields(InstanceRow))
# InstanceRow field -> bf_instances column, where the names differ
_COLUMN_OF = {"table": "table_name", "group": "grp"}


def instance_rows(result: Iterable[Any]) -> list[InstanceRow]:
    """InstanceRows of `select(T_INSTANCES)` rows (SQLAlchemy Rows, or a Result).

    Thousands of rows are read before every run: each row's values are taken by position in one
    `itemgetter` call; a JSON column is decoded once per distinct text (most rows of a backfill share
    them: the decoded values are shared, and read only); the frozen dataclass is filled without its
    generated `__init__` (one `object.__setattr__` per field cost more than the query)."""
    rows = list(result)
    if not rows:
        return []
    names = list(rows[0]._fields)
    columns = [_COLUMN_OF.get(f, f) for f in _ROW_FIELDS]
    present = [f for f, c in zip(_ROW_FIELDS, columns, strict=True) if c in names]
    pick = itemgetter(*(names.index(c) for c in columns if c in names))
    i_fields, i_linked, i_upstream, i_reads = (names.index(c) for c in ("fields", "linked", "upstream", "reads"))
    i_held, i_kill, i_ranged, i_run = (names.index(c) for c in ("held", "kill_requested", "ranged", "run_id"))
    absent = dict.fromkeys(f for f in _ROW_FIELDS if f not in present)
    lists: dict[str | None, tuple[str, ...] | None] = dict(_JSON_EMPTY)
    reads: dict[str | None, Any] = {None: None, "": None}
    new = object.__new__
    out: list[InstanceRow] = []
    for r in rows:
        values = dict(zip(present, pick(r), strict=True))
        if absent:
            values.update(absent)
        texts = r[i_fields], r[i_linked], r[i_upstream], r[i_reads]
        for text in texts[:3]:
            if text not in lists:
                lists[text] = tuple(json.loads(text))
        if texts[3] not in reads:
            reads[texts[3]] = json.loads(texts[3])
        values["fields"] = lists[texts[0]]
        values["linked"] = lists[texts[1]] or ()
        values["upstream"] = lists[texts[2]] or ()
        values["reads"] = reads[texts[3]]  # read only, shared by the rows of the same text
        values["held"], values["kill_requested"] = bool(r[i_held]), bool(r[i_kill])
        values["ranged"], values["run_id"] = bool(r[i_ranged]), r[i_run] or None
        row = new(InstanceRow)
        row.__dict__.update(values)
        out.append(row)
    return out


def connect(url: str, schema: str | None = None) -> Engine:
    """A SQLAlchemy engine on the ledger database, its schema created or migrated."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    if url.startswith("postgresql"):
        # pre-ping: a pooled connection the server closed (restart, pg_terminate_backend) is replaced
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"application_name": f"backfill ledger {os.getpid()}",  # who, in pg_stat_activity
                                  **({"options": f"-csearch_path={schema}"} if schema else {})}
    engine = sa.create_engine(url, future=True, **kwargs)
    translate_errors(engine, schema)
    if url.startswith("sqlite"):
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    ensure_schema(engine, schema)
    return engine


def ensure_schema(engine: Engine, schema: str | None = None) -> None:
    """Create the tables, check the version, migrate an older ledger: once, also when several
    processes open a fresh ledger at the same moment.

    On PostgreSQL every step runs in one transaction holding an advisory lock keyed by the schema
    (concurrent `CREATE TABLE IF NOT EXISTS` race on the catalog); on SQLite in one `BEGIN IMMEDIATE`
    transaction (the database's write lock).

    Migration is additive: every column of the tables above that an existing ledger lacks is added,
    nullable (NULL = unknown for rows written before). A new nullable column or a new table needs no
    migration code; a change of meaning needs a new SCHEMA_VERSION."""
    with engine.connect() as conn:
        if _is_current(conn):  # the usual case, and a read-only ledger stays readable
            return
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                         {"key": f"backfill ledger schema {schema or ''}"})
            if schema:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        meta.create_all(conn, checkfirst=True)
        found = conn.execute(sa.select(T_META.c.value).where(T_META.c.key == "schema_version")).scalar()
        if found is None:
            conn.execute(T_META.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        elif int(found) > SCHEMA_VERSION:
            conn.rollback()
            raise UserError(f"the ledger has schema version {found}, newer than this backfill "
                            f"({SCHEMA_VERSION}); upgrade backfill")
        _add_missing_columns(conn)
        if found is not None and int(found) < SCHEMA_VERSION:
            conn.execute(T_META.update().where(T_META.c.key == "schema_version", T_META.c.value == found)
                         .values(value=str(SCHEMA_VERSION)))
        conn.commit()


def _is_current(conn: Connection) -> bool:
    """Every table and column is there and the version is this one's (reads only)."""
    inspector = sa.inspect(conn)
    if set(meta.tables) - set(inspector.get_table_names()) or _missing_columns(conn):
        return False
    found = conn.execute(sa.select(T_META.c.value).where(T_META.c.key == "schema_version")).scalar()
    conn.rollback()
    return found is not None and int(found) == SCHEMA_VERSION


def _missing_columns(conn: Connection) -> list[tuple[sa.Table, sa.Column[Any]]]:
    inspector = sa.inspect(conn)
    have = set(inspector.get_table_names())
    return [(table, column) for table in meta.sorted_tables if table.name in have
            for names in [{c["name"] for c in inspector.get_columns(table.name)}]
            for column in table.columns if column.name not in names]


def _add_missing_columns(conn: Connection) -> None:
    for table, column in _missing_columns(conn):
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
