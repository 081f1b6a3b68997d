"""Sandboxed Jinja templates: variables, helpers, quoting of values, Dataphin parameters, errors."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st

from backfill.errors import SpecErrors
from backfill.plan.validate import validate_project
from backfill.spec.model import Field, Table, Template
from backfill.sql.templates import (
    CompiledTemplate,
    RenderContext,
    TemplateFailure,
    add_months,
    date_format,
    ds_add,
    quote_literal,
)


def compiled(source: str, hourly: bool = False, dialect: str | None = None) -> CompiledTemplate:
    table = Table(name="t", kind="fact", fields=(Field("id", "BIGINT"),), template=Template(source, "sql/t.sql"),
                  spec_file="tables/t.yaml", granularity="hour" if hourly else "day")
    return CompiledTemplate(table, lambda n: f"phys_{n}", quote_literal, dialect)


def render(source: str, ts: datetime = datetime(2026, 7, 1), params: dict[str, Any] | None = None,
           hourly: bool = False, dialect: str | None = None) -> str:
    return compiled(source, hourly, dialect).render(RenderContext(ts, hourly, params or {})).sql


def failure(source: str, **kw: Any) -> TemplateFailure:
    with pytest.raises(TemplateFailure) as info:
        render(source, **kw)
    return info.value


# ---------------------------------------------------------------- variables

def test_date_variables() -> None:
    out = render("{{ ds }}|{{ ds_nodash }}|{{ bizdate }}|{{ data_timestamp }}", datetime(2026, 3, 1))
    assert out == "2026-03-01|20260301|20260301|2026-03-01 00:00:00"


def test_hour_variables_for_hourly_tables() -> None:
    out = render("{{ ds }} {{ hour }} {{ ts }} {{ ts_nodash }}", datetime(2026, 3, 1, 7), hourly=True)
    assert out == "2026-03-01 07 2026-03-01 07:00:00 20260301070000"
    assert "hour" in failure("{{ hour }}").message  # not for daily tables


def test_ref_resolves_and_records_the_dependency() -> None:
    r = compiled("SELECT * FROM {{ ref('b') }} JOIN {{ ref('a') }} JOIN {{ ref('b') }}").render(
        RenderContext(datetime(2026, 7, 1), False, {}))
    assert r.sql == "SELECT * FROM phys_b JOIN phys_a JOIN phys_b"
    assert r.refs == ("b", "a")


# ---------------------------------------------------------------- helpers

@pytest.mark.parametrize(("expr", "expected"), [
    ("ds_add(ds, -1)", "2026-02-28"),
    ("ds_add(ds, 1)", "2026-03-02"),
    ("ds_add(ds_nodash, -1)", "20260228"),
    ("ds_add(ds, -365)", "2025-03-01"),
    ("add_days(ds, 30)", "2026-03-31"),
    ("add_months(ds, -1)", "2026-02-01"),
    ("add_months(ds, 12)", "2027-03-01"),
    ("add_months(ds_nodash, -13)", "20250201"),
    ("add_hours(ds, -1)", "2026-02-28 23:00:00"),
    ("date_format(ds, '%Y%m')", "202603"),
    ("date_format(ds, '%d/%m/%Y')", "01/03/2026"),
    ("date_format(ds_add(ds, -1), '%Y-%m-%d')", "2026-02-28"),
])
def test_date_helpers_in_templates(expr: str, expected: str) -> None:
    assert render("{{ " + expr + " }}", datetime(2026, 3, 1)) == expected


def test_date_helpers_directly() -> None:
    assert ds_add("2024-02-28", 1) == "2024-02-29"
    assert ds_add("20241231", 1) == "20250101"
    assert add_months("2026-01-31", 1) == "2026-02-28"
    assert add_months("2024-01-31", 1) == "2024-02-29"
    assert add_months("2026-03-31", -1) == "2026-02-28"
    assert add_months(date(2026, 12, 15), 1) == "2027-01-15"
    assert date_format("2026-07-04", "%Y.%m.%d") == "2026.07.04"


def test_date_format_refuses_letters() -> None:
    f = failure("{{ date_format(ds, '%A') }}")
    assert "date_format may only produce digits and separators" in f.message


def test_bad_date_in_a_helper_is_a_template_error() -> None:
    f = failure("SELECT 1\nFROM x WHERE d = '{{ ds_add('not a date', 1) }}'")
    assert f.line == 2


# ---------------------------------------------------------------- values and quoting

def test_an_injection_param_renders_as_one_quoted_literal() -> None:
    evil = "'; DROP TABLE x; --"
    out = render("SELECT {{ params.s }} AS v", params={"s": evil})
    assert out == "SELECT '''; DROP TABLE x; --' AS v"
    (stmt,) = sqlglot.parse(out, read="duckdb")
    assert isinstance(stmt, sqlglot.exp.Select)
    assert stmt.selects[0].this.this == evil


def test_text_params_are_quoted_numbers_raw() -> None:
    out = render("{{ params.n }} {{ params.f }} {{ params.b }} {{ params.none }} {{ params.s }} {{ params.l }}",
                 params={"n": 42, "f": 1.5, "b": True, "none": None, "s": "north", "l": ["a", 1]})
    assert out == "42 1.5 TRUE NULL 'north' ('a', 1)"


def test_text_params_use_the_dialect_quoting() -> None:
    assert render("{{ params.s }}", params={"s": "it's"}) == "'it''s'"
    hive = render("{{ params.s }}", params={"s": "it's"}, dialect="hive")
    assert sqlglot.parse_one(f"SELECT {hive}", read="hive").expressions[0].this == "it's"


@pytest.mark.parametrize("source", [
    "SELECT '{{ params.s }}'",                  # inside a SQL string
    "SELECT 1 -- {{ params.s }}",               # inside a comment
    "SELECT 1 /* {{ params.s }} */",
    'SELECT "{{ params.s }}"',                  # inside a quoted name
    "SELECT 'a' || '{{ params.s }}' || 'b'",
])
def test_a_text_value_inside_quotes_or_comments_is_refused(source: str) -> None:
    with pytest.raises(TemplateFailure) as info:
        render(source, params={"s": "x' OR 1=1 --"})
    assert "quoted SQL literal" in info.value.message or "rendered inside" in info.value.message


def test_a_private_use_character_in_a_param_is_refused() -> None:
    assert "private-use" in failure("{{ params.s }}", params={"s": "a\ue000b"}).message


def test_dates_inside_quotes_are_fine() -> None:
    assert render("WHERE ds = DATE '{{ ds }}' -- {{ ds }}") == "WHERE ds = DATE '2026-07-01' -- 2026-07-01"


# ---------------------------------------------------------------- sandbox

@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ ds_add.__globals__ }}",
    "{{ ref.__closure__ }}",
    "{{ params.__class__ }}",
    "{{ data_timestamp.__class__.__mro__ }}",
    "{{ range.__self__ }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ ''.format.__self__ }}",
])
def test_sandbox_escape_attempts_fail(source: str) -> None:
    f = failure("SELECT 1 AS id\n-- x\n" + source)
    assert f.line == 3
    assert f.message.startswith(("template tried something the sandbox forbids: access to attribute",
                                 "undefined template variable:"))


def test_sandbox_refuses_unsafe_attribute_with_a_clear_message() -> None:
    f = failure("{{ ''.__class__.__mro__ }}")
    assert "sandbox" in f.message or "unsafe" in f.message


def test_cannot_render_arbitrary_objects() -> None:
    assert "cannot render" in failure("{{ ref }}").message


# ---------------------------------------------------------------- Dataphin parameters

@pytest.mark.parametrize(("day", "expected"), [
    (datetime(2026, 7, 1), "20260701 20260702 20260624 2026-07-01 20260602"),
    (datetime(2026, 2, 28), "20260228 20260301 20260221 2026-02-28 20260201"),
    (datetime(2026, 12, 31), "20261231 20270101 20261224 2026-12-31 20261201"),
])
def test_dataphin_parameters_render_per_date(day: datetime, expected: str) -> None:
    # ${...} reads the business date; $[...] the scheduled time (the next day for a daily table)
    src = "${bizdate} $[yyyymmdd] ${yyyymmdd-7} ${yyyy-mm-dd} $[add_months(yyyymmdd,-1)]"
    assert render(src, day) == expected


def test_dataphin_parameters_inside_a_template_with_jinja() -> None:
    src = ("SELECT 1 AS id FROM {{ ref('o') }} WHERE ds = '${bizdate}'\n"
           "{% if ds > '2026-07-01' %}AND prev = '${yyyymmdd-1}'{% endif %} AND run = '$[yyyymmdd]'")
    assert render(src, datetime(2026, 7, 1)) == (
        "SELECT 1 AS id FROM phys_o WHERE ds = '20260701'\n AND run = '20260702'")
    assert render(src, datetime(2026, 7, 2)) == (
        "SELECT 1 AS id FROM phys_o WHERE ds = '20260702'\nAND prev = '20260701' AND run = '20260703'")


def test_dataphin_hour_parameter_for_an_hourly_table() -> None:
    assert render("$[hh24miss-1/24] ${yyyymmdd}", datetime(2026, 7, 1, 0), hourly=True) == "000000 20260701"
    assert render("$[yyyymmddhh24-1/24]", datetime(2026, 7, 1, 0), hourly=True) == "2026070100"


def test_a_bad_dataphin_parameter_fails_at_compile_with_its_position() -> None:
    with pytest.raises(TemplateFailure) as info:
        compiled("SELECT 1\nWHERE ds = '${yyyymmdd-x}'")
    assert info.value.line == 2 and info.value.col == 13


# ---------------------------------------------------------------- errors

def test_undefined_variable_names_the_line() -> None:
    f = failure("SELECT\n    1 AS id\nFROM t WHERE x = {{ nope }}\n")
    assert f.line == 3
    assert "nope" in f.message and "undefined" in f.message
    assert f.col == 21  # where `nope` stands


def test_undefined_param_is_explained() -> None:
    f = failure("SELECT 1\n\n\nWHERE c = {{ params.city }}")
    assert f.line == 4
    assert "no param 'city'" in f.message


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateFailure) as info:
        compiled("SELECT 1\n{% if ds %}\nFROM t\n")
    assert "template syntax" in info.value.message


def test_a_param_quoted_in_the_template_is_refused_at_compile() -> None:
    with pytest.raises(TemplateFailure) as info:
        compiled("SELECT 1\nWHERE c = '{{ params.city }}'")
    assert info.value.line == 2 and "remove the quotes" in info.value.message


def _project(tmp_path: Path, sql_inline_yaml: str, params: str = "") -> Path:
    (tmp_path / "tables").mkdir(parents=True)
    (tmp_path / "backfills").mkdir()
    (tmp_path / "project.yaml").write_text("name: t\ndialect: duckdb\n" + params)
    (tmp_path / "tables" / "a.yaml").write_text(
        "name: a\nkind: fact\nprimary_key: [id]\nfields:\n  - {name: id, type: BIGINT}\n" + sql_inline_yaml)
    return tmp_path


def test_undefined_variable_in_a_project_points_at_the_spec_file_line(tmp_path: Path) -> None:
    root = _project(tmp_path, "sql_inline: |\n  SELECT\n      1 AS id\n  WHERE {{ nope }} = 1\n")
    with pytest.raises(SpecErrors) as info:
        validate_project(root, today=date(2026, 7, 2))
    (err,) = info.value.errors
    assert err.file == "tables/a.yaml"
    assert (err.line, err.col) == (9, 12)  # file line and column of `nope`
    assert err.ds == "2026-07-01"
    assert "nope" in err.message
    assert "{{ nope }}" in err.detail


def test_undefined_variable_in_a_sql_file_points_at_its_line(tmp_path: Path) -> None:
    root = _project(tmp_path, "sql: ../sql/a.sql\n")
    (root / "sql").mkdir()
    (root / "sql" / "a.sql").write_text("SELECT\n  1 AS id\n-- two\nWHERE {{ missing_var }} = 1\n")
    with pytest.raises(SpecErrors) as info:
        validate_project(root, today=date(2026, 7, 2))
    (err,) = info.value.errors
    assert err.one_line().startswith("error: sql/a.sql:4:10: undefined template variable")


def test_sandbox_escape_in_a_project_is_a_validate_error(tmp_path: Path) -> None:
    root = _project(tmp_path, "sql_inline: |\n  SELECT 1 AS id\n  -- {{ cycler.__init__.__globals__ }}\n")
    with pytest.raises(SpecErrors) as info:
        validate_project(root, today=date(2026, 7, 2))
    (err,) = info.value.errors
    assert err.line == 8


def test_backfill_params_override_project_params(tmp_path: Path) -> None:
    root = _project(tmp_path, "sql_inline: |\n  SELECT {{ params.n }} AS id\n", params="params: {n: 1}\n")
    (root / "backfills" / "bf.yaml").write_text("name: bf\ntargets: [{table: a}]\ndata_timestamp: 2026-07-01\n"
                                               "params: {n: 7}\n")
    (root / "backfills" / "plain.yaml").write_text("name: plain\ntargets: [{table: a}]\ndata_timestamp: 2026-07-01\n")
    plans = {p.name: p for p in validate_project(root, today=date(2026, 7, 2)).plans}
    assert plans["bf"].instances[0].sql == "SELECT 7 AS id\n"
    assert plans["plain"].instances[0].sql == "SELECT 1 AS id\n"


def test_a_param_given_only_by_a_backfill(tmp_path: Path) -> None:
    root = _project(tmp_path, "sql_inline: |\n  SELECT 1 AS id WHERE {{ params.city }} <> ''\n")
    (root / "backfills" / "bf.yaml").write_text("name: bf\ntargets: [{table: a}]\ndata_timestamp: 2026-07-01\n"
                                               "params: {city: \"'; DROP TABLE x; --\"}\n")
    (plan,) = validate_project(root, today=date(2026, 7, 2)).plans
    assert plan.instances[0].sql == "SELECT 1 AS id WHERE '''; DROP TABLE x; --' <> ''\n"


def test_range_is_bounded() -> None:
    assert render("{% for i in range(3) %}{{ i }},{% endfor %}") == "0,1,2,"
    f = failure("SELECT 1\n{% for i in range(10 ** 9) %}{{ i }}{% endfor %}")
    assert f.message == ("template exceeds a rendering limit: range of 1,000,000,000 items is too long "
                         "(at most 100,000); iterate over fewer") and f.line == 2


@given(st.text(alphabet=st.sampled_from(["\ue000", "\ue001", "a", "Z", "0", "_", "$", " ", "-", "'", "\n"]),
               max_size=40))
def test_a_marker_glued_to_a_name_is_found_as_the_regular_expression_finds_it(text: str) -> None:
    import re

    from backfill.sql.quoting import _glued

    assert _glued(text) == (re.search("[A-Za-z0-9_$]\ue000|\ue001[A-Za-z0-9_$]", text) is not None)
