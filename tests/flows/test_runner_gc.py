"""The production process collects garbage rarely and never rescans what existed at startup."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stitchboard.app.runner import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_startup_objects_and_raises_the_thresholds() -> None:
    startup = {"settings": ["loaded", "at", "startup"]}
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert not any(tracked is startup for tracked in gc.get_objects())  # frozen: never scanned again
