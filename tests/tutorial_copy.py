"""The retail tutorial as most tests use it: its tables, with the classic two backfills.

The shipped tutorial (specs/) builds everything in one `scope: downstream` backfill; many tests steer
one backfill while another runs, so they use the earlier split: `tutorial_integration` loads the
integration tables (2026-06-25 .. 07-14), `tutorial_logical` builds the logical tables (07-01 .. 07-14).
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TWO_BACKFILLS = Path(__file__).resolve().parent / "fixtures" / "two_backfills"


def copy_tutorial(dest: Path, shipped: bool = False) -> Path:
    """The tutorial specs at `dest` (no source data): with the two classic backfills unless `shipped`."""
    shutil.copytree(ROOT / "specs", dest, ignore=shutil.ignore_patterns(".backfill", "data"))
    if not shipped:
        for f in (dest / "backfills").glob("*.yaml"):
            f.unlink()
        for f in TWO_BACKFILLS.glob("*.yaml"):
            (dest / "backfills" / f.name).write_text(f.read_text().replace("../../../schemas/", "../../schemas/"))
    return dest
