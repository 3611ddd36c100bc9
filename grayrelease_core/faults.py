"""Named points inside the control path where a test can make the process die.

The crash tests arm a handler (in a child process that then really exits, or in-process with
an exception no handler catches) and check that a fresh engine recovers. Unarmed, ``reach``
costs one global lookup: it is only called on the control path, never by ``resolve()``.

Points, in the order an action reaches them: ``claim.before``, ``claim.after``,
``publish.key.<n>`` (after the n-th key, from 1, was published one by one) or
``publish.all`` (after a backend published every key together), ``commit.before``,
``commit.after``; and in recovery ``recover.before`` and ``recover.after``.
"""

from __future__ import annotations

from collections.abc import Callable

_handler: Callable[[str], None] | None = None


def arm(handler: Callable[[str], None] | None) -> None:
    """Call ``handler(point)`` at every point reached from now on (``None`` disarms)."""
    global _handler
    _handler = handler


def reach(point: str) -> None:
    """Mark that the control path got to ``point``."""
    if _handler is not None:
        _handler(point)
