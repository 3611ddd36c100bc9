"""Pausing Python's cyclic garbage collector for the length of a tick.

A tick over many plans allocates a few thousand container objects per plan (plans read from
the store, verdicts, audit rows, parameters), most of which live until the tick's writes.
Each allocation burst makes the collector walk its generations, and the oldest one holds
every live plan and the read index: over 10,000 plans the walks took a fifth of the tick.
Reference counting still frees everything acyclic at once; cycles made meanwhile wait for the
collector, which runs again as soon as the last pause ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_disabled_here = False


@contextmanager
def paused() -> Iterator[None]:
    """Hold the collector off while the block runs (nested and concurrent pauses share one;
    a collector the host turned off stays off)."""
    global _depth, _disabled_here
    with _lock:
        if _depth == 0:
            _disabled_here = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _disabled_here:
                gc.enable()
