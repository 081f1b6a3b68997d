"""Whether a path a template reads stays inside the project's source folders once links are followed.

`source_path_problem` (functions.py) judges the text of a path; this looks at the files: a symbolic
link inside a source folder (`data/x.csv -> /etc/passwd`), or one of the files a glob matches, must
not lead out of the source folders. The engines refuse such reads at run time (DuckDB's
`allowed_directories`, the PostgreSQL reader's own check); this makes `validate` say so first.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

__all__ = ["GLOB_CHARS", "MAX_MATCHES", "escaping_path"]

GLOB_CHARS = "*?["
MAX_MATCHES = 10_000  # files of one glob looked at: a glob over a huge tree stays bounded


def escaping_path(root: Path, sources: Iterable[str], path: str) -> str | None:
    """Why `path` (already under a source folder by its text) leads out of the source folders through
    a symbolic link, or None. A glob is judged by the files it matches now."""
    try:
        folders = [(root / s).resolve() for s in sources]
        if not any(c in path for c in GLOB_CHARS):
            return None if _inside((root / path).resolve(), folders) else \
                f"'{path}' leads out of the source folders through a symbolic link; give a regular file"
        for match in itertools.islice(root.glob(path), MAX_MATCHES):
            if not _inside(match.resolve(), folders):
                shown = match.relative_to(root).as_posix()
                return (f"'{path}' matches '{shown}', which leads out of the source folders through a symbolic "
                        "link; remove the link or narrow the pattern")
    except (OSError, RuntimeError, ValueError):
        return f"'{path}' cannot be resolved (a symbolic link loop?); give a regular file"
    return None


def _inside(real: Path, folders: list[Path]) -> bool:
    return any(real == f or real.is_relative_to(f) for f in folders)
