"""``push``: samples that instances or agents report through ``POST /plan/{planId}/metrics``.

The engine stores them in ``gray_release_monitor`` (through the plan store); this source
reads back each check's window, split into the gray group and the baseline by the ``gray``
flag each sample was stored with.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from grayrelease_core import PlanStore, Settings, ValidationError, hookimpl
from grayrelease_core.metrics import Check, MetricQuery, Observation


class PushSource:
    """Answers every due check of a tick with one query to the store."""

    name = "push"
    wants_instances = False
    """The samples carry their group already: no need to look up the gray instances."""

    def __init__(self, store: PlanStore) -> None:
        self._store = store

    def validate_check(self, check: Check, field: str) -> None:
        if check.query is not None:
            raise ValidationError(f"{field}.query", "the push source takes no query")
        if check.baseline_query is not None:
            raise ValidationError(f"{field}.baselineQuery", "the push source takes no query")

    def fetch(self, queries: Sequence[MetricQuery]) -> list[Observation | Exception]:
        # One query per distinct window: in a tick, checks of the same length share one.
        windows: dict[tuple[datetime, datetime], list[MetricQuery]] = defaultdict(list)
        for query in queries:
            windows[query.start, query.end].append(query)
        found: dict[tuple[datetime, datetime, str, str], Observation] = {}
        for (start, end), batch in windows.items():
            groups = self._store.sample_values(
                {q.plan.id for q in batch}, {q.check.metric for q in batch}, start, end
            )
            for (plan_id, metric), (gray, baseline) in groups.items():
                found[start, end, plan_id, metric] = Observation(tuple(gray), tuple(baseline))
        empty = Observation((), ())
        return [found.get((q.start, q.end, q.plan.id, q.check.metric), empty) for q in queries]


@hookimpl
def grayrelease_register_metric_sources(settings: Settings, store: PlanStore) -> list[PushSource]:
    return [PushSource(store)]
