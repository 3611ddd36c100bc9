"""Daemon threads for periodic work: the sync that keeps a process's index fresh and its hit
buffer written, and (in the Flask adapter) the ticker."""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundSync:
    """Calls ``work`` every ``interval`` seconds until stopped."""

    def __init__(
        self, work: Callable[[], None], interval: float, *, name: str = "grayrelease-sync"
    ) -> None:
        self._work = work
        self._interval = max(interval, 0.01)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self._work()

    def stop(self) -> None:
        """Stop and wait for a round in progress to end."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
