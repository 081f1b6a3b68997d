"""The cyclic garbage collector during a command's run (run/heap.py): what exists when a run starts is
out of the collector's reach while it runs, and handed back at its end; a host's own freeze is left
as it is."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from backfill.run import heap
from backfill.run.apply import apply_project


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_scope_freezes_what_exists_and_hands_it_back() -> None:
    assert gc.get_freeze_count() == 0
    with heap.frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        made = [[n] for n in range(5_000)]  # tracked containers made during the run
        heap.settle()
        assert gc.get_freeze_count() >= frozen + len(made)
        with heap.frozen_heap():  # nested (an apply inside a rerun's process): the outer one unfreezes
            pass
        assert gc.get_freeze_count() >= frozen + len(made)
    assert gc.get_freeze_count() == 0


def test_settle_outside_a_scope_freezes_nothing() -> None:
    heap.settle()
    assert gc.get_freeze_count() == 0


def test_a_host_that_froze_its_heap_is_left_as_it_is() -> None:
    gc.freeze()
    host = gc.get_freeze_count()
    with heap.frozen_heap():
        [[n] for n in range(1_000)]
        heap.settle()  # not our scope: nothing more is frozen
        assert gc.get_freeze_count() == host
    assert gc.get_freeze_count() == host


def test_apply_hands_the_heap_back(tutorial: Path, prefect_api: str) -> None:
    seen: list[int] = []
    report = apply_project(tutorial, say=lambda m: None,
                           on_change=lambda i, p, s: seen.append(gc.get_freeze_count()))
    assert report.ok
    assert seen and min(seen) > 0  # frozen while the instances ran
    assert gc.get_freeze_count() == 0
