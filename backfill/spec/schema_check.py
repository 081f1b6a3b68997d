"""JSON Schema validation of spec files, reported as located one-line errors."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from ..errors import SpecError
from .resources import schema
from .yamlpos import Located

__all__ = ["check_schema"]

_validators: dict[str, Any] = {}


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """JSON Schema's `pattern` as ECMA-262 reads it: a final `$` does not match before a trailing newline
    (Python's does: `name: "x\\n"` passed every name pattern and became a table named `x\\n`)."""
    if not validator.is_type(instance, "string"):
        return
    if re.search(pattern, instance) is None or (pattern.endswith("$") and instance.endswith("\n")):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# a whole number is an int (YAML's 2.0 is a float: `groups: 2.0` reached range() as one); a number is finite
# (YAML's .nan passed every minimum and maximum)
_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many({
    "integer": lambda _c, x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda _c, x: isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x),
})
_Strict = validators.extend(Draft202012Validator, validators={"pattern": _pattern}, type_checker=_TYPES)

_TYPE_NAMES = {"string": "text", "integer": "a whole number", "number": "a number", "object": "a mapping",
               "array": "a list", "boolean": "true or false", "null": "nothing"}


def _validator(kind: str) -> Any:
    if kind not in _validators:
        _validators[kind] = _Strict(schema(kind))
    return _validators[kind]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _got(value: Any) -> str:
    """What a wrong-typed value is, said once: `text 'x'`, `a list`, `the number 3`, `true`."""
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return _show(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r}, which is not a finite number"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return type(value).__name__


def _bool_hint(value: Any) -> str:
    if isinstance(value, bool):
        return " (YAML reads yes/no/on/off as true/false; quote the value if you meant text)"
    return ""


# the name patterns of the schemas, said in words
_PATTERNS = {
    "^[a-z_][a-z0-9_]*$": "lowercase letters, digits and '_', not starting with a digit",
    "^[A-Za-z_][A-Za-z0-9_-]*$": "letters, digits, '_' and '-', starting with a letter or '_'",
    "^[A-Za-z0-9_][A-Za-z0-9_.-]*$": "letters, digits, '_', '.' and '-' only (no '/' or spaces)",
    "^[A-Z_][A-Z0-9_]*$": "an environment variable name (uppercase letters, digits and '_')",
    "^[A-Za-z][A-Za-z0-9_ ,()]*$": "a SQL type such as BIGINT, VARCHAR or DECIMAL(18,2)",
    "^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$":
        "a folder inside the project such as data or raw/csv (no leading '/', no '..')",
    "^[A-Za-z_][A-Za-z0-9_]*$": "a function name (letters, digits and '_', no parentheses)",
}

_FIRST = {"additionalProperties": 0, "required": 1}  # within one node, the most telling problem first


def _rank(e: ValidationError) -> tuple[int, int, str]:
    return -len(e.absolute_path), _FIRST.get(str(e.validator), 2), str(e.message)


def _fits(errors: list[ValidationError], path: tuple[str | int, ...]) -> bool:
    """A oneOf branch fits the value when its type and its discriminating constants match."""
    return not any((e.validator == "type" and tuple(e.absolute_path) == path)
                   or e.validator in ("const", "enum") for e in errors)


def _one_of(err: ValidationError, kind: str, path: tuple[str | int, ...], s: dict[str, Any]
            ) -> tuple[str, tuple[str | int, ...], bool]:
    value = err.instance
    if kind == "table" and not path:
        if isinstance(value, dict) and "sql" in value and "sql_inline" in value:
            return "give only one of 'sql' (a template file) or 'sql_inline', not both; remove one", \
                ("sql_inline",), True
        return "missing 'sql' (a template file) or 'sql_inline' (the template itself); add one", path, False
    branches: dict[Any, list[ValidationError]] = {}
    for c in err.context or []:
        branches.setdefault(c.relative_schema_path[0], []).append(c)
    fitting = [errs for errs in branches.values() if _fits(errs, path)]
    if len(fitting) == 1:
        best = min(fitting[0], key=_rank)
        leaf = tuple(best.absolute_path) == path and best.validator in ("pattern", "type", "enum", "const")
        if not (leaf and s.get("description")):
            return _message(best, kind)
    # no branch fits: a wrong constant deeper down (engine.type, scope.mode) is the precise problem
    deeper = [c for c in err.context or [] if len(c.absolute_path) > len(path)]
    if deeper:
        at = max(len(c.absolute_path) for c in deeper)
        deepest = [c for c in deeper if len(c.absolute_path) == at]
        if len({tuple(c.absolute_path) for c in deepest}) == 1 and all(
                c.validator in ("const", "enum") for c in deepest):
            allowed: list[str] = []
            for c in deepest:
                values: Any = [c.validator_value] if c.validator == "const" else c.validator_value
                for a in values:
                    if str(a) not in allowed:
                        allowed.append(str(a))
            return f"{_show(deepest[0].instance)} is not one of " + ", ".join(allowed) + \
                _bool_hint(deepest[0].instance), tuple(deepest[0].absolute_path), False
        if not s.get("description"):
            return _message(min(deeper, key=_rank), kind)
    types: list[str] = []
    for errs in branches.values():
        wrong = [e for e in errs if e.validator == "type" and tuple(e.absolute_path) == path]
        if not wrong:
            break
        name = _TYPE_NAMES.get(str(wrong[0].validator_value), str(wrong[0].validator_value))
        if name not in types:
            types.append(name)
    else:
        if types:  # every branch wants another type
            about = f" ({s['description']})" if s.get("description") else ""
            expected = " or ".join(types) if len(types) < 3 else ", ".join(types[:-1]) + " or " + types[-1]
            return f"expected {expected}, got {_got(value)}{about}", path, False
    what = s.get("description") or "see the schema"
    return f"{_show(value)} is not valid here; expected {what}{_bool_hint(value)}", path, False


def _message(err: ValidationError, kind: str) -> tuple[str, tuple[str | int, ...], bool]:
    """(message, key path, point at the key rather than the value)."""
    path = tuple(err.absolute_path)
    v, s = err.validator, err.schema if isinstance(err.schema, dict) else {}
    value: Any = err.instance
    wanted: Any = err.validator_value
    if v == "required":
        missing = [k for k in wanted if k not in (value or {})]
        if len(missing) > 1:
            return "missing required keys " + ", ".join(f"'{k}'" for k in missing) + "; add them", path, False
        return f"missing required key '{missing[0]}'; add it", path, False
    if v == "additionalProperties":
        allowed = sorted((s.get("properties") or {}).keys())
        extras = [k for k in value if k not in allowed]
        key = extras[0]
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else \
            "allowed keys: " + ", ".join(k for k in allowed if k != "$schema")
        return f"unknown key '{key}'; {hint}", path + (key,), True
    if v == "enum":
        choices = ", ".join(map(str, wanted))
        return f"{_show(value)} is not one of {choices}{_bool_hint(value)}", path, False
    if v == "const":
        return f"{_show(value)} must be '{err.validator_value}'", path, False
    if v == "type":
        expected = _TYPE_NAMES.get(str(err.validator_value), err.validator_value)
        return f"expected {expected}, got {_got(value)}", path, False
    if v in ("minimum", "maximum"):
        lo, hi = s.get("minimum"), s.get("maximum")
        rng = f"between {lo} and {hi}" if lo is not None and hi is not None else \
            (f"at least {lo}" if hi is None else f"at most {hi}")
        return f"{value} is out of range: must be {rng}", path, False
    if v == "maxLength":
        return f"is {len(value)} characters long; shorten it to at most {err.validator_value}", path, False
    if v == "minLength":
        return "must not be empty", path, False
    if v == "pattern":
        what = _PATTERNS.get(str(err.validator_value)) or s.get("description") or \
            f"the pattern {err.validator_value}"
        return f"{_show(value)} is not of the expected form: {what}", path, False
    if v == "minItems":
        return f"must list at least {err.validator_value} item(s)", path, False
    if v == "uniqueItems":
        return "lists the same item twice; remove the duplicate", path, False
    if v in ("oneOf", "anyOf"):
        return _one_of(err, kind, path, s)
    return str(err.message), path, False


def _nul_bytes(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Where a text value holds a NUL character (no file name, SQL or name can: paths raised on it)."""
    if isinstance(value, str):
        if "\0" in value:
            yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nul_bytes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nul_bytes(v, (*path, i))


def check_schema(doc: Located, kind: str) -> list[SpecError]:
    """Every schema violation of one spec file, located at the offending node."""
    out: list[SpecError] = [doc.error(at, "contains a NUL character (\\0); remove it") for at in _nul_bytes(doc.value)]
    for err in _validator(kind).iter_errors(doc.value):
        message, path, at_key = _message(err, kind)
        out.append(doc.error(path, message, key=at_key))
    return out
