"""Fuzzing the YAML loader and the template renderer: whatever the input, the answer is success or
`error:` lines (SpecError / TemplateFailure), within a time and memory bound, never a traceback.

The time bound is the CPU time of each example (the renderer stops at 2 s of CPU time; a loaded
machine does not change it); the memory bound is tracemalloc's peak.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.errors import SpecError, SpecErrors
from backfill.spec.loader import load_project
from backfill.spec.model import Field, Table, Template
from backfill.spec.yamlpos import Located, load_yaml_text
from backfill.sql.templates import CompiledTemplate, RenderContext, TemplateFailure, quote_literal

MEMORY_BOUND = 96 * 2**20
CPU_BOUND = 5.0  # seconds of CPU time per example
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@contextmanager
def memory_bound() -> Iterator[None]:
    """The block stays under MEMORY_BOUND bytes and CPU_BOUND seconds of CPU time."""
    started = time.thread_time()
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MB"
    assert time.thread_time() - started < CPU_BOUND


# ------------------------------------------------------------------ YAML

YAML_TOKENS = ["name: x\n", "a: ", "- ", "[", "]", "{", "}", ", ", ": ", "&a ", "*a ", "&b ", "*b ", "<<: *a\n",
               "!!python/object:os.system ", "!!binary ", "? ", "|\n  ", ">-\n  ", "'", '"', "\\", "#", "---\n",
               "...\n", "%YAML 1.1\n", "\t", "  ", "\n", "yes", "no", "~", "null", "1e999", "0x1F", "2026-07-01",
               "9999-12-31", "\ufeff", "\x00", "\ue000", "é", "🙂", "key", "value", "[*a, *a, *a, *a, *a]"]
yaml_texts = st.one_of(
    st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join),
    st.text(max_size=300),
)


@FUZZ
@given(yaml_texts)
def test_yaml_loader_answers_a_value_or_one_error(text: str) -> None:
    with memory_bound():
        result = load_yaml_text(text, "f.yaml")
    assert isinstance(result, Located | SpecError)
    if isinstance(result, SpecError):
        assert result.one_line().startswith("error: f.yaml")


@FUZZ
@given(yaml_texts, st.sampled_from(["project.yaml", "tables/t.yaml", "backfills/b.yaml"]))
def test_project_loader_answers_a_project_or_error_lines(tmp_path_factory: pytest.TempPathFactory, text: str,
                                                         where: str) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "tables").mkdir()
    (root / "backfills").mkdir()
    if where != "project.yaml":
        (root / "project.yaml").write_text("name: p\n")
    (root / where).write_text(text, encoding="utf-8", errors="surrogatepass")
    with memory_bound():
        try:
            load_project(root)
        except SpecErrors as exc:
            assert exc.errors and all(e.one_line().startswith("error: ") for e in exc.errors)


# ------------------------------------------------------------------ templates

NUMBERS = st.sampled_from([0, 1, 3, 10, 100, 1000, 10**5, 10**6, 2 * 10**9, -1])
STRINGS = st.sampled_from(["'a'", "'%5d'", "'{:>5}'", "'{:>{}}'", "'x\\ny'", "ds", "ds_nodash", "params.p",
                           "'%*d'", "'$$'", "'\\''"])


def _expr(draw: Callable[..., Any]) -> str:
    s, n, m = draw(STRINGS), draw(NUMBERS), draw(NUMBERS)
    return draw(st.sampled_from([
        f"{s} * {n}", f"{s}|center({n})", f"{s}.ljust({n})", f"{s}|format({n})", f"{s}.format({n}, {m})",
        f"({s} * {n})|join({s})", f"{s}.replace('a', {s} * {m})", f"{n} ** {m}", f"({n} ** {m}) ** {m}",
        f"range({n})|list|length", f"{s} ~ {s}", f"{s} + {s}", f"{s}|indent({n})", f"{s}[{n}:{m}]",
        f"ds_add(ds, {n})", f"{s}|upper", f"{s}.__class__", f"lipsum({n})", f"{s} % {n}",
    ]))


@st.composite
def templates(draw: Callable[..., Any]) -> str:
    parts = ["SELECT 1 AS c"]
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 5))
        expr = _expr(draw)
        if kind == 0:
            parts.append(f"{{{{ {expr} }}}}")
        elif kind == 1:
            parts.append(f"{{% set v = {expr} %}}")
        elif kind == 2:
            n, m = draw(NUMBERS), draw(NUMBERS)
            parts.append(f"{{% for i in range({n}) %}}{{% for j in range({m}) %}}{{% endfor %}}{{% endfor %}}")
        elif kind == 3:
            parts.append("{% macro f(n) %}{% if n > 0 %}{% set a = f(n - 1) %}{% endif %}{% endmacro %}"
                         f"{{% set v = f({draw(NUMBERS)}) %}}")
        elif kind == 4:
            parts.append(f"{{% set ns = namespace(s={draw(STRINGS)}) %}}{{% for i in range({draw(NUMBERS)}) %}}"
                         "{% set ns.s = ns.s ~ ns.s %}{% endfor %}")
        else:
            parts.append(draw(st.text(alphabet="{}%#-'\"$E ()|~.\n", max_size=20)))
    return " ".join(parts)


@FUZZ
@given(templates())
def test_renderer_answers_sql_or_one_failure(source: str) -> None:
    table = Table(name="t", kind="fact", fields=(Field("c", "BIGINT"),), template=Template(source, "t.sql"),
                  spec_file="t.yaml")
    with memory_bound():
        try:
            compiled = CompiledTemplate(table, lambda n: n, quote_literal, "duckdb")
            rendered = compiled.render(RenderContext(datetime(2026, 7, 1), False, {"p": "v"}))
        except TemplateFailure as exc:
            assert exc.message and exc.line >= 0
            assert compiled_error_line(table, exc).startswith("error: t.sql:")
            return
    assert isinstance(rendered.sql, str) and len(rendered.sql) <= 1_000_000


def compiled_error_line(table: Table, exc: TemplateFailure) -> str:
    from backfill.sql.located import template_error as _template_error

    return _template_error(table, exc, "2026-07-01").one_line()


def test_fuzz_corpus_examples_run(tmp_path: Path) -> None:
    """The YAML tokens include the classic attacks; each alone is answered too."""
    for token in YAML_TOKENS:
        assert isinstance(load_yaml_text(token * 50, "f.yaml"), Located | SpecError)
