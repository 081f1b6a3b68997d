"""The project's source folders (`sources` in project.yaml): the only files a template may read.

A folder must be a real folder inside the project: a symbolic link (`data -> /`, which git commits
as readily as a file) would make the engines allow whatever it points to.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import SpecError
from .yamlpos import Located

__all__ = ["source_folder_errors"]


def source_folder_errors(doc: Located, root: Path, sources: Sequence[str]) -> list[SpecError]:
    """Errors for source folders that are, or pass through, a symbolic link, or lead out of the project."""
    errors: list[SpecError] = []
    top = root.resolve()
    for i, folder in enumerate(sources):
        path = root / folder
        links = [p for p in [path, *path.parents] if p.is_symlink() and (p == root or root in p.parents)]
        try:
            outside = path.exists() and not path.resolve().is_relative_to(top)
        except (OSError, RuntimeError):
            outside = True
        if links or outside:
            shown = links[0].relative_to(root).as_posix() if links else folder
            at: tuple[str | int, ...] = ("sources", i) if "sources" in doc.value else ("sources",)  # the default
            errors.append(doc.error(at, (
                f"source folder '{folder}' is not a plain folder of the project ('{shown}' is a symbolic link "
                "or leads out of it); templates may only read files inside the project: make it a real "
                "folder and copy or mount the data there")))
    return errors
