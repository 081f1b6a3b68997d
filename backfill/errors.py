"""Errors a user sees: each names a file, a line and column, a key path, and what to do."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["SpecError", "SpecErrors", "UserError", "format_key_path", "snippet"]


def format_key_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def snippet(text: str, line: int, col: int, context: int = 0) -> str:
    """The offending source line with a caret under column `col` (both 1-based)."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    first = max(1, line - context)
    out = []
    width = len(str(line))
    for n in range(first, line + 1):
        out.append(f"{n:>{width}} | {lines[n - 1]}")
    out.append(" " * width + " | " + " " * max(0, col - 1) + "^")
    return "\n".join(out)


@dataclass(frozen=True)
class SpecError:
    """One problem in a project, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    key_path: tuple[str | int, ...] = ()
    table: str | None = None
    ds: str | None = None
    detail: str = field(default="", compare=False)

    @property
    def location(self) -> str:
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.col or 1}"

    def one_line(self) -> str:
        parts = []
        if self.location:
            parts.append(self.location)
        if self.key_path:
            parts.append(format_key_path(self.key_path))
        parts.append(self.message)
        return "error: " + ": ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "key_path": format_key_path(self.key_path) or None,
            "table": self.table,
            "ds": self.ds,
            "message": self.message,
            "detail": self.detail or None,
        }


class SpecErrors(Exception):
    """Every error found in one pass; raised only after the whole pass collected them."""

    def __init__(self, errors: Iterable[SpecError]):
        self.errors = sorted(
            set(errors), key=lambda e: (e.file or "", e.line or 0, e.col or 0, e.message)
        )
        super().__init__("\n".join(e.one_line() for e in self.errors))


class UserError(Exception):
    """A refused operation or bad argument: printed as one `error:` line, exit code 1."""
