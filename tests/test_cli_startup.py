"""The read-only commands never import Prefect (its import alone costs seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SPECS = Path(__file__).resolve().parent.parent / "specs"

PROBE = """
import sys
from typer.testing import CliRunner
from backfill.cli.main import _register_optional, app
_register_optional()
result = CliRunner().invoke(app, sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))
print("exit", result.exit_code, "prefect modules", len(loaded))
"""


@pytest.mark.parametrize("args", [
    ["validate"], ["plan", "--format", "json"], ["status", "--json"], ["instances"], ["--help"],
])
def test_read_only_commands_do_not_import_prefect(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, *args, *(["--project", str(SPECS)] if args != ["--help"]
                                                              else [])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("prefect modules 0"), out.stdout
