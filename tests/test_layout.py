"""The package's stages import only downwards: spec, sql, state, plan, run, cli (errors is shared).

A module that imports from a later stage (at run time or only for type checking) fails this test,
with the line that does it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "backfill"
STAGES = ["errors", "spec", "sql", "state", "plan", "run", "cli"]


def _stage(module: str) -> str | None:
    head = module.split(".")[1] if module.startswith("backfill.") else None
    return head if head in STAGES else None


def _imports(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every intra-package import of a file."""
    rel = path.relative_to(package_dir.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [(node.lineno, n) for n in names if n.startswith("backfill")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("backfill")]
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        own = _stage("backfill." + ".".join(path.relative_to(package).with_suffix("").parts))
        if own is None:
            continue  # the package's own __init__: the public API, above every stage
        for line, module in _imports(path, package):
            target = _stage(module)
            if target is not None and STAGES.index(target) > STAGES.index(own):
                bad.append(f"{path.relative_to(package.parent)}:{line}: stage {own} imports {module} (stage {target})")
    return bad


def test_stages_import_only_downwards() -> None:
    assert violations() == []


def test_every_module_belongs_to_a_stage() -> None:
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert top == {"__init__.py", "cli", "errors.py", "plan", "run", "spec", "sql", "state"}


def test_the_check_itself_catches_an_upward_import(tmp_path: Path) -> None:
    fake = tmp_path / "backfill"
    for stage, text in [("spec", "from ..run.apply import x\nfrom ..errors import UserError\n"),
                        ("run", "from ..spec import model\nfrom ..cli import main\n")]:
        (fake / stage).mkdir(parents=True)
        (fake / stage / "__init__.py").write_text("")
        (fake / stage / "m.py").write_text(text)
    assert violations(fake) == ["backfill/run/m.py:2: stage run imports backfill.cli (stage cli)",
                                "backfill/spec/m.py:1: stage spec imports backfill.run.apply (stage run)"]


def test_every_stage_says_what_enters_and_leaves() -> None:
    for stage in STAGES[1:-1]:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text())) or ""
        assert "Enters" in doc and "Leaves" in doc, stage
