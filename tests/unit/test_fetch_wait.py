"""The projector's fetch wait: the consumer's own while records flow, longer once idle."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from projections.projector import FetchWait


def _consumer(wait_ms: int) -> Any:
    return SimpleNamespace(_fetcher=SimpleNamespace(config={"fetch_max_wait_ms": wait_ms}))


def test_the_wait_grows_only_after_the_idle_time_and_shrinks_with_the_next_records() -> None:
    consumer = _consumer(50)
    wait = FetchWait(consumer, idle_ms=500, idle_after=0.05)
    wait.polled(0)
    assert consumer._fetcher.config["fetch_max_wait_ms"] == 50  # not idle long enough yet
    time.sleep(0.06)
    wait.polled(0)
    assert consumer._fetcher.config["fetch_max_wait_ms"] == 500
    wait.polled(3)
    assert wait.current_ms == 50
    wait.polled(0)  # records a moment ago: still busy
    assert wait.current_ms == 50


def test_an_idle_wait_below_the_consumers_own_is_not_taken() -> None:
    consumer = _consumer(800)
    wait = FetchWait(consumer, idle_ms=500, idle_after=0.0)
    wait.polled(0)
    assert wait.current_ms == 800


def test_a_consumer_without_the_setting_keeps_its_own_wait() -> None:
    wait = FetchWait(SimpleNamespace(), idle_ms=500, idle_after=0.0)
    wait.polled(0)
    wait.polled(5)
    assert wait.current_ms is None
    assert FetchWait(None).current_ms is None
