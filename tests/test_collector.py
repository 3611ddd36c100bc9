"""The tick pauses the cyclic collector and always gives it back as it found it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from grayrelease_core import GrayRelease, ManualClock
from grayrelease_core.collector import paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_invariant_the_collector_is_off_during_a_tick_and_on_after() -> None:
    seen: list[bool] = []
    with GrayRelease.from_settings(
        {"database_url": "sqlite://", "background_sync": False},
        clock=ManualClock(),
        load_entrypoints=False,
    ) as gr:
        original = gr.flush_hits

        def spy(plan_id: str | None = None) -> int:
            seen.append(gc.isenabled())
            return original(plan_id)

        gr.flush_hits = spy  # type: ignore[method-assign]
        gr.tick()
        assert seen == [False]
        assert gc.isenabled()

        def failing(plan_id: str | None = None) -> int:
            raise RuntimeError("store down")

        gr.flush_hits = failing  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            gr.tick()
        gr.flush_hits = original  # type: ignore[method-assign]
        assert gc.isenabled()


def test_overlapping_pauses_share_one_and_the_last_gives_it_back() -> None:
    entered, release = threading.Barrier(2, timeout=10), threading.Event()

    def tick_in_a_thread() -> None:
        with paused():
            entered.wait()
            release.wait(10)

    thread = threading.Thread(target=tick_in_a_thread, daemon=True)
    thread.start()
    try:
        with paused():
            entered.wait()
            assert not gc.isenabled()
        assert not gc.isenabled()  # the other pause is still running
    finally:
        release.set()
        thread.join(10)
    assert gc.isenabled()


def test_a_collector_the_host_turned_off_stays_off() -> None:
    gc.disable()
    with paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
