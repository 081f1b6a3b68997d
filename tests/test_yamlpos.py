"""Spec loading keeps node positions; the C parser (fast path) and the Python parser agree exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backfill.spec import yamlpos

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted([*ROOT.glob("specs/**/*.yaml"), *ROOT.glob("tests/fixtures/**/*.yaml")])


def _load(text: str, fast: bool) -> object:
    saved = yamlpos._FAST_LOADER
    yamlpos._FAST_LOADER = saved if fast else None
    try:
        doc = yamlpos.load_yaml_text(text, "x.yaml")
    finally:
        yamlpos._FAST_LOADER = saved
    if isinstance(doc, yamlpos.Located):
        return doc.value, doc.values, doc.keys, doc.block_scalars
    return doc


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="PyYAML built without libyaml")
def test_fast_and_python_parsers_give_the_same_values_and_positions() -> None:
    assert len(SPEC_FILES) > 50
    for path in SPEC_FILES:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert _load(text, fast=True) == _load(text, fast=False), path


def test_positions_of_keys_values_and_block_scalars() -> None:
    text = "name: t\nfields:\n  - {name: a, type: BIGINT}\nsql_inline: |\n    SELECT 1\n"
    doc = yamlpos.load_yaml_text(text, "t.yaml")
    assert isinstance(doc, yamlpos.Located)
    assert doc.keys[("fields",)] == (2, 1) and doc.values[("fields", 0, "type")] == (3, 21)
    assert doc.block_scalars[("sql_inline",)] == (5, 5)  # template line 1 is file line 5, column 5


def test_a_syntax_error_names_line_and_column_in_the_python_parsers_words() -> None:
    err = yamlpos.load_yaml_text("a: [1\n", "x.yaml")
    assert isinstance(err, yamlpos.SpecError)
    assert err.one_line() == ("error: x.yaml:2:1: YAML syntax: expected ',' or ']', but got '<stream end>' "
                              "(while parsing a flow sequence that starts at line 1, column 4); "
                              "fix the indentation or quoting")
