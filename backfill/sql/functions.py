"""Which SQL functions a template may call: an allow-list per dialect, deny by default.

Every function call of a SQL shape is looked at once. A call is allowed when sqlglot knows the
function as a typed expression (its catalogue of standard scalar, aggregate and window functions)
and it is not on the deny list, or when its name is on the dialect's list of known harmless
functions, or when the project allows it explicitly (`allow_functions` in project.yaml).
Functions that read files are allowed only on literal paths under the project's source folders.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlglot import exp

__all__ = ["FILE_READERS", "FunctionProblem", "function_name", "function_problems", "source_path_problem"]

# table functions that read files: only on literal paths under a declared source folder
FILE_READERS = frozenset({
    "read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json", "read_json_auto",
    "read_ndjson", "read_ndjson_auto", "sniff_csv",
})

# typed sqlglot functions that still reach outside the query: sessions, sequences, files
_DENIED_TYPED: frozenset[type[exp.Expr]] = frozenset({exp.NextValueFor, exp.ToFile})

_COMMON = frozenset({
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "ceiling", "cos", "cot", "degrees", "exp", "floor",
    "ln", "log", "log10", "log2", "mod", "pi", "power", "pow", "radians", "round", "sign", "sin", "sqrt", "tan",
    "trunc", "greatest", "least", "coalesce", "nullif", "ifnull", "nvl", "concat", "concat_ws", "length",
    "char_length", "character_length", "lower", "upper", "trim", "ltrim", "rtrim", "btrim", "lpad", "rpad",
    "replace", "reverse", "left", "right", "substr", "substring", "strpos", "position", "initcap", "md5",
    "split_part", "starts_with", "ascii", "chr", "translate", "regexp_replace", "regexp_matches",
    "sum", "avg", "min", "max", "count", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop",
    "var_samp", "corr", "covar_pop", "covar_samp", "bool_and", "bool_or", "every", "string_agg", "array_agg",
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value",
    "last_value", "nth_value", "date_trunc", "date_part", "extract", "make_date", "to_char", "to_date",
    "to_timestamp", "age", "isfinite", "generate_series", "unnest", "percentile_cont", "percentile_disc",
    "mode", "width_bucket", "date_add", "date_sub", "date_diff", "datediff",
})

_DUCKDB = _COMMON | frozenset({
    "strftime", "strptime", "try_strptime", "epoch", "epoch_ms", "epoch_us", "make_timestamp", "make_time",
    "last_day", "dayname", "monthname", "year", "month", "day", "hour", "minute", "second", "week",
    "quarter", "dayofweek", "dayofmonth", "dayofyear", "isodow", "isoyear", "yearweek", "time_bucket",
    "datepart", "datetrunc", "date_diff", "date_sub", "contains", "ends_with", "prefix", "suffix", "instr",
    "string_split", "str_split", "regexp_extract", "regexp_full_match", "levenshtein", "hamming", "jaccard",
    "jaro_winkler_similarity", "printf", "format", "repeat", "list_value", "list_contains", "list_sum",
    "list_extract", "list_element", "array_length", "len", "list", "histogram", "any_value", "arg_max",
    "arg_min", "argmax", "argmin", "max_by", "min_by", "median", "quantile", "quantile_cont",
    "quantile_disc", "first", "last", "count_if", "countif", "product", "fsum", "favg", "hash",
    "struct_pack", "row", "typeof", "if", "iff", "ifnull", "isnan", "isinf", "even", "gcd", "lcm", "bit_count",
    "json_extract", "json_extract_string", "json_value", "json_array_length", "to_json", "range",
    "sha256", "sha1", "base64", "to_base64", "from_base64", "hex", "unhex", "bar", "nullif", "ascii",
    "century", "decade", "millennium", "era", "to_days", "to_months", "to_years", "to_hours",
    "to_minutes", "to_seconds", "current_date", "today", "now", "cardinality", "nextafter", "list_aggregate",
    "list_sort", "list_distinct", "list_reverse", "list_slice", "list_concat", "array_contains", "element_at",
    "map", "map_keys", "map_values", "regexp_split_to_array", "age", "make_interval", "uuid", "gen_random_uuid",
    "current_timestamp", "unicode", "ord", "strlen", "bit_length", "list_position", "flatten",
})

_POSTGRES = _COMMON | frozenset({
    "now", "clock_timestamp", "date", "justify_days", "justify_hours", "make_interval", "to_number",
    "regexp_split_to_array", "regexp_split_to_table", "string_to_array", "array_to_string", "array_length",
    "cardinality", "jsonb_build_object", "json_build_object", "jsonb_agg", "json_agg", "jsonb_extract_path_text",
    "json_extract_path_text", "bit_and", "bit_or", "num_nonnulls", "num_nulls", "format", "quote_ident",
    "quote_literal", "encode", "decode", "octet_length", "sha256",
})

ALLOWED: dict[str, frozenset[str]] = {"duckdb": _DUCKDB, "postgres": _POSTGRES}


@dataclass(frozen=True)
class FunctionProblem:
    message: str
    name: str  # as written, to find it in the template
    node: exp.Expr


# typed nodes whose SQL name is data (their `this`): `ANONYMOUS_AGG_FUNC('pg_read_file', ...)` is written
# out as `PG_READ_FILE(...)`, so they are judged by that name, like any function sqlglot does not know
_NAMED_BY_ARGUMENT: tuple[type[exp.Func], ...] = (exp.Anonymous, exp.AnonymousAggFunc, exp.CombinedAggFunc,
                                                   exp.ParameterizedAgg, exp.CombinedParameterizedAgg)


def function_name(node: exp.Func) -> str:
    """The function's name as SQL spells it (lower case)."""
    if isinstance(node, _NAMED_BY_ARGUMENT):
        return str(node.name).lower()
    return str(node.sql_name()).lower()


def _allowed(node: exp.Func, names: frozenset[str], extra: frozenset[str]) -> bool:
    name = function_name(node)
    if name in extra:
        return True
    if isinstance(node, _NAMED_BY_ARGUMENT):
        return name in names
    return type(node) not in _DENIED_TYPED


def _literal_paths(node: exp.Func) -> list[str] | None:
    """The literal path(s) a file reader reads, or None if they are not plain string literals."""
    first = node.args.get("this") if not isinstance(node, exp.Anonymous) else None
    if not isinstance(first, exp.Expr):
        first = node.expressions[0] if node.expressions else None
    items = first.expressions if isinstance(first, exp.Array) else [first]
    if not items or not all(isinstance(i, exp.Literal) and i.is_string for i in items):
        return None
    return [str(i.this) for i in items if i is not None]


def source_path_problem(path: str, sources: Iterable[str]) -> str | None:
    """Why `path` is not a file under one of the project's source folders, or None if it is."""
    folders = [s.strip("/") for s in sources]
    shown = ", ".join(folders) or "none"
    if not path or path.startswith(("/", "~")) or "\\" in path or ":" in path.split("/")[0]:
        return f"'{path}' is not a path inside the project; give a path under a source folder ({shown})"
    norm = posixpath.normpath(path)
    if ".." in path.split("/") or norm.startswith(".."):
        return f"'{path}' climbs out of its folder with '..'; give a path under a source folder ({shown})"
    if not any(norm == f or norm.startswith(f + "/") for f in folders):
        return (f"'{path}' is not under a declared source folder ({shown}); move the file there or add "
                "its folder to `sources` in project.yaml")
    return None


def function_problems(tree: exp.Expr, dialect: str, extra: Iterable[str] = (),
                      sources: Iterable[str] = ("data",),
                      escapes: Callable[[str], str | None] | None = None) -> list[FunctionProblem]:
    """Every call in `tree` that the allow-list refuses, in order, once per name. `escapes`: why a
    path that is under a source folder by its text leads out of them on disk (sourcepaths.py)."""
    names = ALLOWED.get(dialect, _COMMON)
    allowed_extra = frozenset(e.lower() for e in extra)
    out: list[FunctionProblem] = []
    seen: set[str] = set()
    for node in tree.find_all(exp.Func):
        name = function_name(node)
        if name in FILE_READERS and name not in allowed_extra:
            paths = _literal_paths(node)
            why = "its path must be a literal from source(), e.g. read_csv({{ source('data/x.csv') }})" \
                if paths is None else next(filter(None, (source_path_problem(p, sources)
                                                         or (escapes(p) if escapes else None) for p in paths)), None)
            if why is not None and name not in seen:
                seen.add(name)
                out.append(FunctionProblem(f"{name} may only read files under the project's source "
                                           f"folders: {why}", name, node))
            continue
        if name in FILE_READERS or _allowed(node, names, allowed_extra) or name in seen:
            continue
        seen.add(name)
        out.append(FunctionProblem(
            f"function '{name}' is not allowed in templates (it is not on the {dialect} allow-list); "
            "if it is harmless, add it to allow_functions in project.yaml", name, node))
    return out
