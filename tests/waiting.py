"""Waiting in tests for what another thread does (a watcher, a long poll), with a bound."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(check: Callable[[], object], seconds: float = 8.0) -> None:
    """Poll ``check`` until it is true; fail the test if ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)
