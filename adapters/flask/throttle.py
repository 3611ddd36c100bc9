"""Failed console logins slow their source down: growing waits after a few failures.

The state is kept in this process's memory, keyed by the address the request came from. That
is a choice with a limit: with N processes serving one database an attacker gets up to N times
the attempts (each process counts alone), and a restart forgets the count. It costs no
database write per wrong guess (which would let the guesses themselves load the database), and
the waits still turn thousands of guesses a second into a handful a minute per process. Behind
a reverse proxy every client shares the proxy's address unless the host fixes
``remote_addr`` (Werkzeug's ``ProxyFix``); then one attacker slows everyone's logins.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from datetime import datetime, timedelta

import attrs

from grayrelease_core import Clock

FREE_FAILURES = 5
"""Failures in a window before waits begin: the fifth is followed by the first wait."""
FIRST_WAIT = timedelta(seconds=1)
"""The wait after the fifth failure; it doubles with each further failure."""
LONGEST_WAIT = timedelta(minutes=15)
WINDOW = timedelta(hours=1)
"""A source whose last failure is this old starts again from nothing (longer than the
longest wait, so waiting one out does not buy a fresh set of free failures)."""
MAX_SOURCES = 10_000
"""Sources remembered at once (the oldest go first), so spoofed addresses cannot fill memory."""


@attrs.define
class _Failures:
    count: int
    last: datetime
    locked_until: datetime
    refused: int = 0
    """Attempts refused during the current wait (only the first of them is audited)."""


@attrs.define
class LoginThrottle:
    """Counts failed logins per source address, on the engine's clock (tests drive it)."""

    clock: Clock
    _sources: OrderedDict[str, _Failures] = attrs.field(factory=OrderedDict, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def attempt(self, source: str) -> tuple[int, bool] | None:
        """Let ``source`` try a token now (``None``), or the seconds it must still wait and
        whether this is the first refusal of the current wait.

        An attempt let through counts as a failure at once, under the lock, until
        :meth:`succeeded` clears it: many guesses sent at the same moment cannot all pass
        the check before any of them is counted.
        """
        now = self.clock.now()
        with self._lock:
            failures = self._current(source, now)
            if failures is not None and now < failures.locked_until:
                failures.refused += 1
                seconds = max(1, math.ceil((failures.locked_until - now).total_seconds()))
                return seconds, failures.refused == 1
            count = 1 if failures is None else failures.count + 1
            extra = count - FREE_FAILURES + 1
            wait = (
                min(FIRST_WAIT * 2 ** min(extra - 1, 20), LONGEST_WAIT)
                if extra > 0
                else timedelta()
            )
            self._sources[source] = _Failures(count, now, now + wait)
            self._sources.move_to_end(source)
            while len(self._sources) > MAX_SOURCES:
                self._sources.popitem(last=False)
            return None

    def succeeded(self, source: str) -> None:
        """A right token clears the source's count (its own attempt included)."""
        with self._lock:
            self._sources.pop(source, None)

    def _current(self, source: str, now: datetime) -> _Failures | None:
        failures = self._sources.get(source)
        if failures is not None and now - failures.last >= WINDOW and now >= failures.locked_until:
            del self._sources[source]
            return None
        return failures
