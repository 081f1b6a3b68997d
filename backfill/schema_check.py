"""JSON Schema validation of spec files, reported as located one-line errors."""

from __future__ import annotations

import difflib
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import SpecError
from .resources import schema
from .yamlpos import Located

__all__ = ["check_schema"]

_validators: dict[str, Draft202012Validator] = {}

_TYPE_NAMES = {"string": "text", "integer": "a whole number", "number": "a number", "object": "a mapping",
               "array": "a list", "boolean": "true or false", "null": "nothing"}


def _validator(kind: str) -> Draft202012Validator:
    if kind not in _validators:
        _validators[kind] = Draft202012Validator(schema(kind))
    return _validators[kind]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _pytype(value: Any) -> str:
    for name, kinds in (("text", str), ("true or false", bool), ("a whole number", int), ("a number", float),
                        ("a mapping", dict), ("a list", list)):
        if isinstance(value, kinds):
            return name
    return "nothing" if value is None else type(value).__name__


def _message(err: ValidationError, kind: str) -> tuple[str, tuple[str | int, ...], bool]:
    """(message, key path, point at the key rather than the value)."""
    path = tuple(err.absolute_path)
    v, s = err.validator, err.schema if isinstance(err.schema, dict) else {}
    value = err.instance
    if v == "required":
        missing = [k for k in err.validator_value if k not in (value or {})]
        return f"missing required key '{missing[0]}'; add it", path, False
    if v == "additionalProperties":
        allowed = sorted((s.get("properties") or {}).keys())
        extras = [k for k in value if k not in allowed]
        key = extras[0]
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "allowed keys: " + ", ".join(k for k in allowed if k != "$schema")
        return f"unknown key '{key}'; {hint}", path + (key,), True
    if v == "enum":
        return f"{_show(value)} is not one of " + ", ".join(map(str, err.validator_value)), path, False
    if v == "const":
        return f"{_show(value)} must be '{err.validator_value}'", path, False
    if v == "type":
        return f"expected {_TYPE_NAMES.get(str(err.validator_value), err.validator_value)}, got {_pytype(value)} {_show(value)}", path, False
    if v in ("minimum", "maximum"):
        lo, hi = s.get("minimum"), s.get("maximum")
        rng = f"between {lo} and {hi}" if lo is not None and hi is not None else (f"at least {lo}" if hi is None else f"at most {hi}")
        return f"{value} is out of range: must be {rng}", path, False
    if v == "maxLength":
        return f"is {len(value)} characters long; at most {err.validator_value} are allowed", path, False
    if v == "minLength":
        return "must not be empty", path, False
    if v == "pattern":
        what = s.get("description") or f"the pattern {err.validator_value}"
        return f"{_show(value)} is not of the expected form: {what}", path, False
    if v == "minItems":
        return f"must list at least {err.validator_value} item(s)", path, False
    if v == "uniqueItems":
        return "lists the same item twice; remove the duplicate", path, False
    if v in ("oneOf", "anyOf"):
        if kind == "table" and not path:
            return "give exactly one of 'sql' (a template file) or 'sql_inline'", path, False
        # a nested problem deeper than this node is the precise one
        deeper = [c for c in err.context or [] if len(c.absolute_path) > len(path)]
        if deeper:
            return _message(min(deeper, key=lambda c: (-len(c.absolute_path), str(c.message))), kind)
        what = s.get("description") or "see the schema"
        return f"{_show(value)} is not valid here; expected {what}", path, False
    return str(err.message), path, False


def check_schema(doc: Located, kind: str) -> list[SpecError]:
    """Every schema violation of one spec file, located at the offending node."""
    out: list[SpecError] = []
    for err in _validator(kind).iter_errors(doc.value):
        message, path, at_key = _message(err, kind)
        out.append(doc.error(path, message, key=at_key))
    return out
