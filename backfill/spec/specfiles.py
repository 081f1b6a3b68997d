"""Which files of a project folder are spec files, and how they are named in messages."""

from __future__ import annotations

from pathlib import Path

__all__ = ["inside", "relative", "spec_files"]


def spec_files(root: Path, folder: str) -> list[Path]:
    d = root / folder
    if not d.is_dir():
        return []
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def relative(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):  # outside the project, or a symbolic link loop
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return path.as_posix()


def inside(root: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symbolic link loop: reading it says so
        return True
