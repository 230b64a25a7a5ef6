"""The collector pause around bulk builds (core.bulk_gc) always leaves the collector as it found it."""

from __future__ import annotations

import gc

import pytest

from wfbatch.core.bulk_gc import collector_paused


def test_the_pause_nests_and_turns_the_collector_back_on_even_after_an_error() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause did not end the outer one
    assert gc.isenabled()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
