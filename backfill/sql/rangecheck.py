"""A range template names its dates with start_ds / end_ds only.

A range template (it uses `start_ds`/`end_ds`, or `start_ts`/`end_ts`) writes a whole batch of
partitions in one statement. A per-partition variable in it (`ds`, `bizdate`, `${yyyymmdd}`, ...) has
one value for the whole batch, the batch's first date, so every partition would hold rows computed
for another date while each instance's recorded SQL says its own: refused where the template is read.
"""

from __future__ import annotations

import jinja2
import jinja2.meta
from jinja2 import nodes

from . import dataphin
from .sandbox import line_col, name_column

__all__ = ["PER_PARTITION_VARIABLES", "per_partition_in_range"]

PER_PARTITION_VARIABLES = ("ds", "ds_nodash", "bizdate", "data_timestamp", "hour", "ts", "ts_nodash")
_FIX = ("a range template (it uses start_ds/end_ds) writes a whole batch in one statement, where {what} would "
        "be the batch's first date for every partition; use start_ds and end_ds (or start_ts and end_ts) only")


def per_partition_in_range(env: jinja2.Environment, source: str, converted: nodes.Template
                           ) -> tuple[str, int, int] | None:
    """(message, line, col) of the first per-partition date in a range template's `source`, or None.
    `converted` is the parsed template after scheduling parameters became calls."""
    used = jinja2.meta.find_undeclared_variables(converted)
    names = [n for n in PER_PARTITION_VARIABLES if n in used]
    params = dataphin.find_params(source)
    if params:
        first = params[0]
        return (_FIX.format(what=f"the scheduling parameter {first.text}"), *line_col(source, first.start))
    if not names:
        return None
    try:
        found = [n for n in env.parse(source).find_all(nodes.Name) if n.name in names]
    except jinja2.TemplateSyntaxError:
        found = []
    lines = source.splitlines()
    if not found:
        return _FIX.format(what=f"`{names[0]}`"), 1, 1
    node = min(found, key=lambda n: n.lineno)
    text = lines[node.lineno - 1] if 1 <= node.lineno <= len(lines) else ""
    return _FIX.format(what=f"`{node.name}`"), node.lineno, name_column(text, node.name) or 1

