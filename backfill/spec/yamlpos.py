"""YAML loading that keeps where every key and value came from (1-based line and column)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_VALUES", "Located", "load_yaml_text", "load_yaml_file",
           "read_regular_text"]

MAX_FILE_BYTES = 1_000_000  # a spec file or template larger than this is refused unread
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_VALUES = 100_000  # values a document holds once its aliases are expanded

Path_ = tuple[str | int, ...]

_SCALARS = yaml.SafeLoader("")  # a constructor for plain scalars (ints, bools, null, floats)


@dataclass
class Located:
    """A plain Python value plus the positions of every node inside it."""

    value: Any
    file: str
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    block_scalars: dict[Path_, tuple[int, int]] = field(default_factory=dict)  # literal `|`: content line, col
    # scalars whose text does not map line for line onto the file (folded `>`, quoted or plain over
    # several lines): a position inside them is given as where the value starts
    inexact: set[Path_] = field(default_factory=set)
    quoted: set[Path_] = field(default_factory=set)  # single-line quoted scalars: their text starts a column later
    lines: list[str] = field(default_factory=list, repr=False, compare=False)  # the source, while loading
    count: int = field(default=0, repr=False, compare=False)  # values converted so far

    def where(self, path: Path_, key: bool = False) -> tuple[int, int]:
        """Position of the node at `path`, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def error(self, path: Path_, message: str, key: bool = False, **extra: Any) -> SpecError:
        line, col = self.where(path, key=key)
        return SpecError(message, file=self.file, line=line, col=col, key_path=tuple(path), **extra)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node: yaml.Node, path: Path_, doc: Located) -> Any:
    if len(path) > MAX_DEPTH:
        raise _LocatedYamlError(f"values nested more than {MAX_DEPTH} levels deep; flatten the document", node)
    doc.count += 1
    if doc.count > MAX_VALUES:
        raise _LocatedYamlError(f"the document holds more than {MAX_VALUES:,} values once its aliases are "
                                "expanded; write the values out instead of repeating aliases", node)
    doc.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _LocatedYamlError("a mapping key must be a plain name", key_node)
            key = str(key_node.value)
            if key in out:
                raise _LocatedYamlError(f"duplicate key '{key}'", key_node)
            doc.keys[path + (key,)] = _mark(key_node)
            out[key] = _convert(value_node, path + (key,), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), doc) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if node.style == "|":
        doc.block_scalars[path] = (node.start_mark.line + 2, _block_indent(node, doc.lines) + 1)
    elif node.style == ">" or node.start_mark.line != node.end_mark.line:
        doc.inexact.add(path)
    elif node.style in ("'", '"'):
        doc.quoted.add(path)
    if node.tag == "tag:yaml.org,2002:timestamp" or node.tag == "tag:yaml.org,2002:str":
        return str(node.value)  # dates stay text: the schema and the model parse them
    if not node.tag.startswith("tag:yaml.org,2002:") or node.tag.endswith((":binary", ":set", ":omap", ":pairs")):
        raise _LocatedYamlError(f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not supported; "
                                "remove it (values are plain text, numbers, booleans, lists and mappings)", node)
    try:
        return _SCALARS.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise _LocatedYamlError(f"cannot read the value: {str(exc).splitlines()[0]}", node) from None


def _block_indent(node: yaml.ScalarNode, lines: list[str]) -> int:
    """Indentation of a block scalar's content: its column 1 is this column + 1 in the file."""
    for text in lines[node.start_mark.line + 1:node.end_mark.line + 1]:
        if text.strip(" \0"):
            return len(text) - len(text.lstrip(" "))
    return node.start_mark.column


class _LocatedYamlError(Exception):
    def __init__(self, message: str, node: yaml.Node):
        super().__init__(message)
        self.message = message
        self.line, self.col = _mark(node)


_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def _compose(text: str) -> yaml.Node | None:
    """libyaml's C parser when present (about 10x faster, same nodes and marks); a document it refuses
    is parsed again by the Python parser, whose error wording the messages are written against."""
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError as exc:
            if "nesting depth" in str(exc):  # the Python parser would recurse until it fails, slowly
                raise RecursionError(str(exc)) from None
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> SpecError:
    """A character YAML refuses (a control character, U+FFFE...), at its line and column."""
    pos = exc.position if isinstance(exc.position, int) and 0 <= exc.position <= len(text) else 0
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
    kind = "control characters" if char < 0x20 or 0x7F <= char <= 0x9F else "special characters"
    return SpecError(f"YAML: unacceptable character #x{char:04x} ({kind} are not allowed); remove it",
                     file=file, line=line, col=col)


def load_yaml_text(text: str, file: str) -> Located | SpecError:
    """Parse one YAML document. Returns the located value, or the one syntax error."""
    text = text.removeprefix("\ufeff")
    try:
        node = _compose(text)
    except RecursionError:
        return SpecError(f"YAML: values nested too deep; flatten the document (at most {MAX_DEPTH} levels)",
                         file=file, line=1, col=1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        ctx = exc.context_mark
        if exc.problem and exc.context and ctx is not None and (ctx.line + 1, ctx.column + 1) != (line, col):
            problem += f" ({exc.context} that starts at line {ctx.line + 1}, column {ctx.column + 1})"
        return SpecError(f"YAML syntax: {problem}; fix the indentation or quoting", file=file, line=line, col=col)
    except yaml.reader.ReaderError as exc:
        return _reader_error(exc, text, file)
    except yaml.YAMLError as exc:  # pragma: no cover - errors without a mark
        return SpecError(f"YAML: {str(exc).splitlines()[0]}", file=file, line=1, col=1)
    doc = Located(value=None, file=file)
    if node is None:
        doc.value = {}
        doc.values[()] = (1, 1)
        return doc
    doc.lines = text.splitlines()
    try:
        doc.value = _convert(node, (), doc)
    except _LocatedYamlError as exc:
        return SpecError(f"YAML: {exc.message}", file=file, line=exc.line, col=exc.col)
    doc.lines = []
    return doc


def read_regular_text(path: Path) -> str:
    """A regular file's UTF-8 text, without a byte-order mark. Raises ValueError saying why not: not a
    regular file (a FIFO, a folder, a device, a symbolic link loop), too large, unreadable, not UTF-8."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"{exc.strerror or exc}; give a regular file") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file (a FIFO, folder or device); give a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise ValueError(f"the file is {st.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} a spec or "
                         "template may have; split it")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the file is more than the {MAX_FILE_BYTES:,} bytes a spec or template may have; split it")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{exc}; save it as UTF-8 text") from None


def load_yaml_file(path: Path, display: str) -> Located | SpecError:
    try:
        text = read_regular_text(path)
    except ValueError as exc:
        return SpecError(f"cannot read file: {exc}", file=display)
    return load_yaml_text(text, display)
