"""The installed package carries its schemas and the tutorial; `backfill init` writes a runnable project."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import jsonschema
from typer.testing import CliRunner

from backfill.cli.main import _register_optional, app

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_schemas_and_the_tutorial(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from hatchling.builders.wheel import WheelBuilder

    monkeypatch.chdir(ROOT)
    wheel = Path(next(iter(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))))
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("project", "table", "backfill"):
        assert f"backfill/_data/schemas/{kind}.schema.json" in names
    assert "backfill/_data/tutorial/project.yaml" in names
    assert "backfill/_data/tutorial/sql/dws_all.sql" in names
    assert not any(n.startswith("backfill/_data/tutorial/data/") or "/.backfill/" in n for n in names)


def test_schemas_are_draft_2020_12_and_every_parameter_has_a_default_or_is_required() -> None:
    schema = json.loads((ROOT / "schemas" / "backfill.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    for key in ("name", "targets", "scope", "runtime", "data_timestamp", "groups", "order", "skip", "dry_run",
                "params"):
        assert key in props, key
    assert props["groups"]["minimum"] == 1 and props["groups"]["maximum"] == 12 and props["groups"]["default"] == 1
    assert props["name"]["maxLength"] == 128
    assert props["order"]["enum"] == ["ascending", "descending"]
    for kind in ("project", "table"):
        jsonschema.Draft202012Validator.check_schema(json.loads((ROOT / "schemas" / f"{kind}.schema.json").read_text()))


def test_tutorial_specs_point_editors_at_the_schemas() -> None:
    for path in [ROOT / "specs" / "project.yaml", *sorted((ROOT / "specs").glob("*/*.yaml"))]:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target.is_file() and target.parent == ROOT / "schemas", path


def test_init_writes_a_project_that_validates(tmp_path: Path) -> None:
    _register_optional()
    runner = CliRunner()
    target = tmp_path / "retail"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "project.yaml").is_file() and (target / "data" / "orders.csv").is_file()
    assert not (target / ".backfill").exists()
    checked = runner.invoke(app, ["validate", "--project", str(target), "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["instances"] == 147  # 7 tables x 21 days, one backfill
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 1
    assert f"error: {target} exists and is not empty; choose a new folder" in again.output
