"""The specs at a git revision, read straight from the object database: the working tree and the
index are never touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import UserError

__all__ = ["extract", "locate", "resolve_commit"]


def _git(top: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", "--literal-pathspecs", *args], cwd=top, input=stdin,
                              capture_output=True, check=False)
    except FileNotFoundError:
        raise UserError("git is not installed (or not on PATH); `backfill diff` needs it") from None
    if done.returncode != 0:
        msg = done.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"git {args[0]} failed: {msg[-1] if msg else 'exit ' + str(done.returncode)}")
    return done.stdout


def locate(project: Path) -> tuple[Path, str]:
    """(git top level, the project's path inside the repository as 'a/b/' or '')."""
    here, missing = project.resolve(), list[str]()
    while not here.is_dir():  # a project folder deleted from the working tree: start from its parent
        missing.insert(0, here.name)
        here = here.parent
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "--show-prefix"], cwd=here,
                             capture_output=True, check=False, text=True)
    except FileNotFoundError:
        raise UserError("git is not installed (or not on PATH); `backfill diff` needs it") from None
    lines = out.stdout.splitlines()
    if out.returncode != 0 or not lines:
        raise UserError(f"{project} is not inside a git repository; `backfill diff` compares git revisions")
    prefix = lines[1] if len(lines) > 1 else ""
    prefix += "".join(m + "/" for m in missing)
    return Path(lines[0]), prefix


def resolve_commit(top: Path, rev: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
                         cwd=top, capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise UserError(f"unknown git revision '{rev}' (in {top}); try a branch, tag, commit or HEAD~1")
    return out.stdout.strip()


def extract(top: Path, commit: str, prefix: str, dest: Path) -> Path | None:
    """Write the project subtree at `commit` under `dest`; its root, or None if no project.yaml there."""
    listing = _git(top, "ls-tree", "-r", "-z", "--full-tree", commit, *([prefix] if prefix else []))
    entries: list[tuple[str, str, str]] = []  # (mode, object, path)
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, path = record.decode("utf-8", "surrogateescape").split("\t", 1)
        mode, kind, obj = meta.split(" ")
        if kind == "blob":
            entries.append((mode, obj, path))
    if not any(path == f"{prefix}project.yaml" for _, _, path in entries):
        return None
    blobs = _git(top, "cat-file", "--batch", stdin="".join(o + "\n" for _, o, _ in entries).encode())
    pos = 0
    for mode, _obj, path in entries:
        header_end = blobs.index(b"\n", pos)
        size = int(blobs[pos:header_end].split(b" ")[2])
        content = blobs[header_end + 1:header_end + 1 + size]
        pos = header_end + 1 + size + 1
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            try:
                os.symlink(content.decode("utf-8", "surrogateescape"), target)
                continue
            except OSError:  # no symlinks here: keep the link text as a file
                pass
        target.write_bytes(content)
    return dest / prefix if prefix else dest
