"""``push``: samples that instances or agents report through ``POST /plan/{planId}/metrics``.

The engine stores them in ``gray_release_monitor`` (through the plan store); this source
reads back each check's window, split into the gray group and the baseline by the ``gray``
flag each sample was stored with: so an instance that turned gray at a step counts as baseline
before it and as gray after. A rate check reads the counted samples (``events`` of
``total``), summed per instance; a value check the mean value per instance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from grayrelease_core import PlanStore, Settings, ValidationError, hookimpl
from grayrelease_core.metrics import Check, MetricQuery, Observation
from grayrelease_core.sequential import NO_COUNTS


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
        for name, query in (
            ("totalQuery", check.total_query),
            ("baselineTotalQuery", check.baseline_total_query),
        ):
            if query is not None:
                raise ValidationError(
                    f"{field}.{name}", "the push source takes no query: push events and total"
                )

    def fetch(self, queries: Sequence[MetricQuery]) -> list[Observation | Exception]:
        # One query per distinct window and kind: in a tick, checks of one window share one.
        windows: dict[tuple[datetime, datetime, bool], list[MetricQuery]] = defaultdict(list)
        for query in queries:
            windows[query.start, query.end, query.check.is_rate].append(query)
        found: dict[tuple[datetime, datetime, bool, str, str], Observation] = {}
        for (start, end, rate), batch in windows.items():
            plan_ids = {q.plan.id for q in batch}
            metrics = {q.check.metric for q in batch}
            if rate:
                counted = self._store.sample_counts(plan_ids, metrics, start, end)
                for (plan_id, metric), (gray, baseline) in counted.items():
                    found[start, end, rate, plan_id, metric] = Observation((), (), gray, baseline)
                continue
            groups = self._store.sample_values(plan_ids, metrics, start, end)
            for (plan_id, metric), (gray_values, baseline_values) in groups.items():
                found[start, end, rate, plan_id, metric] = Observation(
                    tuple(gray_values), tuple(baseline_values)
                )
        empty = Observation((), ())
        counted_empty = Observation((), (), NO_COUNTS, NO_COUNTS)
        return [
            found.get(
                (q.start, q.end, q.check.is_rate, q.plan.id, q.check.metric),
                counted_empty if q.check.is_rate else empty,
            )
            for q in queries
        ]


@hookimpl
def grayrelease_register_metric_sources(settings: Settings, store: PlanStore) -> list[PushSource]:
    return [PushSource(store)]
