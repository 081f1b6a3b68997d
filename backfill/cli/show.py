"""`backfill show TABLE`: a peek at the rows of a table's partitions (read-only)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UserError
from .common import JsonOpt, ProjectOpt, emit_json, project_root, usage_error, user_errors

if TYPE_CHECKING:
    from ..spec.model import Table


def register(app: typer.Typer) -> None:
    @app.command("show", help="Show rows of a table in the warehouse (read-only), per data timestamp.")
    def show(
        table: Annotated[str, typer.Argument(help="table name")],
        ds: Annotated[str | None, typer.Option("--date", help="one data timestamp (default: the latest)")] = None,
        limit: Annotated[int, typer.Option(help="rows to show", min=1, max=10000)] = 10,
        project: ProjectOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from ..run.engines import open_engine
        from ..spec.loader import load_project
        from ..spec.timestamps import parse_timestamp

        if ds is not None:
            try:
                parse_timestamp(ds)
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ]\d{2}(:00(:00)?)?)?", ds.strip()):
                    raise ValueError("not of the form YYYY-MM-DD")
            except ValueError as exc:
                usage_error(f"--date '{ds}' is not a real date or hour ({exc}); give YYYY-MM-DD (or YYYY-MM-DDTHH)")

        with user_errors(as_json):
            proj = load_project(project_root(project))
            spec = proj.tables.get(table)
            if spec is None:
                raise UserError(f"unknown table '{table}'; see tables/")
            engine = open_engine(proj, read_only=True)
            try:
                part = f'"{spec.partition}"'
                if ds is None:
                    latest = engine.query(f'SELECT max({part}) FROM "{table}"')
                    if not latest or latest[0][0] is None:
                        raise UserError(f"table '{table}' has no rows yet; run `backfill apply`")
                    ds = str(latest[0][0]).replace(" ", "T")[:13 if spec.hourly else 10]
                where, params, shown = _where(spec, part, ds)
                cols = [f.name for f in spec.fields]
                order = ", ".join(f'"{k}"' for k in spec.primary_key) or "1"
                select = ", ".join(f'"{c}"' for c in cols)
                rows = engine.query(f'SELECT {select} FROM "{table}" WHERE {where} '
                                    f"ORDER BY {order} LIMIT {int(limit)}", params)
                total = engine.query(f'SELECT count(*) FROM "{table}" WHERE {where}', params)[0][0]
            finally:
                engine.close()
        if as_json:
            emit_json({"table": table, "ds": shown, "rows": total,
                       "sample": [dict(zip(cols, r, strict=True)) for r in rows]})
            return
        from rich.console import Console
        from rich.table import Table as RichTable

        out = RichTable(title=f"{table} {shown}: {total} row(s), first {len(rows)}", title_justify="left")
        for c in cols:
            out.add_column(c)
        for r in rows:
            out.add_row(*("" if v is None else str(v) for v in r))
        Console(width=160).print(out)


def _where(table: Table, part: str, ds: str) -> tuple[str, list[object], str]:
    """(predicate, its parameters, the partition shown): one partition; of an hourly table given a day,
    that day's hours."""
    from ..run.engines.base import partition_value

    text = ds.strip().replace(" ", "T")
    if table.hourly and len(text) == 10:
        day = date.fromisoformat(text)
        start = datetime(day.year, day.month, day.day)
        return f"{part} >= ? AND {part} < ?", [start, start + timedelta(days=1)], text
    value = partition_value(table, text)
    return f"{part} = ?", [value], text[:13] if table.hourly else text[:10]
