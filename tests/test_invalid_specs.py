"""The broken-spec corpus: `backfill validate` must reject each case with exactly the expected errors.

A case under `fixtures/invalid/<case>/` is the valid project `fixtures/base/` with some files replaced
or added (same relative paths), the base files named in `remove.txt` deleted, and in `expected.txt`
the exact `error:` lines validate prints on stderr, in order; `{project}` stands for the project
folder. Errors found while learning the table graph name the earliest data timestamp the backfills
ask for (2026-07-01 in the base project), at which validate renders every template once.

Validate only reads: no case may create, change or delete a file in the project folder.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from typer.testing import CliRunner, Result

from backfill.cli import main as cli_main
from backfill.plan.validate import validate_project
from backfill.spec.model import Field, Table, Template
from backfill.sql.templates import CompiledTemplate, RenderContext, quote_literal

FIXTURES = Path(__file__).parent / "fixtures"
BASE = FIXTURES / "base"
INVALID = FIXTURES / "invalid"
POSITIVE = FIXTURES / "positive"
CONTROL_FILES = {"expected.txt", "remove.txt"}
CASES = sorted(p.name for p in INVALID.iterdir() if p.is_dir())
ERROR_LINE = re.compile(r"^error: (?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): ")


@pytest.fixture(scope="module")
def runner() -> Iterator[CliRunner]:
    cli_main._register_optional()  # the whole command line, as `backfill` has it
    yield CliRunner()


def make_project(tmp_path: Path, overlay: Path | None) -> Path:
    """The base project with `overlay`'s files copied over it and its remove.txt files deleted."""
    root = tmp_path / "project"
    shutil.copytree(BASE, root)
    if overlay is None:
        return root
    for src in sorted(overlay.rglob("*")):
        if src.is_file() and src.name not in CONTROL_FILES:
            dst = root / src.relative_to(overlay)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    removals = overlay / "remove.txt"
    if removals.exists():
        for name in removals.read_text(encoding="utf-8").split():
            (root / name).unlink()
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes] | None]:
    """Every file (bytes, size, mtime) and folder under the project."""
    out: dict[str, tuple[int, int, bytes] | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            out[rel + "/"] = None
        else:
            st = p.stat()
            out[rel] = (st.st_size, st.st_mtime_ns, p.read_bytes())
    return out


def validate(runner: CliRunner, root: Path, *extra: str) -> Result:
    return runner.invoke(cli_main.app, ["validate", "--project", str(root), *extra])


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


def expected_lines(case: str, root: Path) -> list[str]:
    text = (INVALID / case / "expected.txt").read_text(encoding="utf-8").replace("{project}", str(root))
    return [line for line in text.splitlines() if line.strip()]


def test_corpus_is_large_and_complete() -> None:
    assert len(CASES) >= 140
    for case in CASES:
        folder = INVALID / case
        assert (folder / "expected.txt").is_file(), f"{case}: no expected.txt"
        assert expected_lines(case, Path("/p")), f"{case}: expected.txt is empty"
        assert any(p.is_file() and p.name != "expected.txt" for p in folder.rglob("*")), \
            f"{case}: changes nothing in the base project"


def test_base_project_validates(runner: CliRunner, tmp_path: Path) -> None:
    root = make_project(tmp_path, None)
    before = snapshot(root)
    result = validate(runner, root)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: project shop: 4 tables, 1 backfills, 10 instances checked in ")
    assert error_lines(result.stderr) == []
    assert snapshot(root) == before


@pytest.mark.parametrize("case", CASES)
def test_invalid_spec(runner: CliRunner, tmp_path: Path, case: str) -> None:
    root = make_project(tmp_path, INVALID / case)
    before = snapshot(root)
    result = validate(runner, root)

    assert result.exit_code == 1, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    got = error_lines(result.stderr)
    wanted = expected_lines(case, root)
    assert got == wanted, "\n".join(["got:", *got, "expected:", *wanted])
    n = len(got)
    assert result.stderr.rstrip().endswith(f"{n} error{'s' if n != 1 else ''} found")
    assert result.stdout == ""
    assert snapshot(root) == before, "validate changed the project folder"


def test_invalid_spec_as_json(runner: CliRunner, tmp_path: Path) -> None:
    root = make_project(tmp_path, INVALID / "sql_unknown_column")
    before = snapshot(root)
    result = validate(runner, root, "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    [error] = payload["errors"]
    assert (error["file"], error["line"], error["col"]) == ("sql/fct_order.sql", 5, 7)
    assert error["table"] == "fct_order"
    assert error["message"].startswith("unknown column 'c.city_name': table 'ods_customer' has no field")
    # the same error, located the same way, as the human output gives it
    [line] = error_lines(result.stderr)
    m = ERROR_LINE.match(line)
    assert m and (m["file"], int(m["line"]), int(m["col"])) == ("sql/fct_order.sql", 5, 7)
    assert snapshot(root) == before


def test_yaml_error_as_json(runner: CliRunner, tmp_path: Path) -> None:
    root = make_project(tmp_path, INVALID / "backfill_groups_13")
    result = validate(runner, root, "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload == {"ok": False, "errors": [{
        "file": "backfills/july.yaml", "line": 9, "col": 9, "key_path": "groups", "table": None, "ds": None,
        "message": "13 is out of range: must be between 1 and 12", "detail": None,
    }]}


# ---------------------------------------------------------------- params are data, never SQL

INJECTION = "'; DROP TABLE x; --"


def test_param_with_sql_renders_as_one_quoted_literal(runner: CliRunner, tmp_path: Path) -> None:
    """A backfill param carrying SQL renders as a string literal: the SQL stays one valid SELECT."""
    root = make_project(tmp_path, POSITIVE / "param_injection")
    before = snapshot(root)
    result = validate(runner, root)
    assert result.exit_code == 0, result.stderr
    assert snapshot(root) == before

    checked = validate_project(root)
    [plan] = checked.plans
    fct = [i for i in plan.instances if i.table == "fct_order"]
    assert len(fct) == 5
    for instance in fct:
        assert "c.city = '''; DROP TABLE x; --'" in instance.sql
        [statement] = sqlglot.parse(instance.sql, read="duckdb")
        assert isinstance(statement, exp.Select)
        literals = [lit.this for lit in statement.find_all(exp.Literal) if lit.is_string]
        assert INJECTION in literals


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "hive", "spark", "mysql", "bigquery", "snowflake"])
def test_text_params_quote_for_the_project_dialect(dialect: str) -> None:
    """Where a backslash escapes a quote (hive, mysql, ...), a param cannot use one to break out."""
    table = Table(name="t", kind="fact", fields=(Field("c", "VARCHAR"),),
                  template=Template("SELECT {{ params.v }} AS c", "t.sql"), spec_file="t.yaml")
    compiled = CompiledTemplate(table, lambda n: n, quote_literal, dialect)
    for value in ("\\' OR 1=1 -- ", INJECTION, "a\\'b\\\\c''"):
        sql = compiled.render(RenderContext(datetime(2026, 7, 1), False, {"v": value})).sql
        [statement] = sqlglot.parse(sql, read=dialect)
        assert isinstance(statement, exp.Select)
        [literal] = statement.find_all(exp.Literal)
        assert literal.this == value, sql
