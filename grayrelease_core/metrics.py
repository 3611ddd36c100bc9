"""What the judge needs from a metric source.

A metric source (a plugin, hook ``grayrelease_register_metric_sources``) answers, for one
check of one plan over one time window, the samples of the gray group and of the baseline
(everyone else). The judge (:mod:`grayrelease_core.judge`) turns them into a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import attrs

from .checks import Check
from .errors import GrayReleaseError
from .models import Plan
from .sequential import Counts, CountSums

__all__ = [
    "Check",
    "CountSums",
    "Counts",
    "MetricQuery",
    "MetricSource",
    "MetricSourceError",
    "Observation",
]


class MetricSourceError(GrayReleaseError):
    """A metric source could not answer (down, timed out, bad query): never a verdict."""

    code = "METRIC_SOURCE_ERROR"


@attrs.frozen
class MetricQuery:
    """One question to a metric source: ``check`` of ``plan`` over ``(start, end]``.

    ``start`` is never before the plan's current stage began (its last step), so a look
    judges one exposure; for a rate check it is the previous look, so each event counts once.
    """

    plan: Plan
    check: Check
    start: datetime
    end: datetime
    gray_instances: frozenset[str]
    """Ids of the instances recorded as having received the plan's gray value."""
    gray_ips: frozenset[str] = frozenset()
    """Their addresses, for sources that know instances by address."""

    @property
    def window_seconds(self) -> int:
        return max(1, round((self.end - self.start).total_seconds()))


@attrs.frozen
class Observation:
    """What a source found for one query: one value per instance (or per series) and group,
    the mean of its samples over the window. Points of one instance are not independent of
    each other; counting them as separate observations would make every instance that differs
    a little from the fleet look significant."""

    gray: tuple[float, ...]
    baseline: tuple[float, ...]
    gray_counts: Counts | CountSums | None = None
    """For a rate check (``measure: rate``): each gray instance's events and requests over
    the window (``Counts``), or their sums (``CountSums``, which a store can compute in SQL);
    the judge tests the counts, not the values."""
    baseline_counts: Counts | CountSums | None = None


@runtime_checkable
class MetricSource(Protocol):
    """A place metrics come from."""

    name: str

    def validate_check(self, check: Check, field: str) -> None:
        """Refuse a check this source cannot answer (a ``ValidationError`` naming ``field``)."""
        ...

    def fetch(self, queries: Sequence[MetricQuery]) -> list[Observation | Exception]:
        """Answer each query in order; an exception in a slot makes that check inconclusive.

        Called once per tick with every due query for this source, so a source can batch.
        """
        ...
