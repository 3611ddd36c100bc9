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
        if not queries:
            return []
        samples = self._store.samples(
            {q.plan.id for q in queries},
            {q.check.metric for q in queries},
            min(q.start for q in queries),
            max(q.end for q in queries),
        )
        by_series: dict[tuple[str, str], list[tuple[float, bool, datetime]]] = defaultdict(list)
        for sample in samples:
            by_series[sample.plan_id, sample.metric].append((sample.value, sample.gray, sample.at))
        answers: list[Observation | Exception] = []
        for query in queries:
            gray: list[float] = []
            baseline: list[float] = []
            for value, is_gray, at in by_series[query.plan.id, query.check.metric]:
                if query.start <= at < query.end:
                    (gray if is_gray else baseline).append(value)
            answers.append(Observation(tuple(gray), tuple(baseline)))
        return answers


@hookimpl
def grayrelease_register_metric_sources(settings: Settings, store: PlanStore) -> list[PushSource]:
    return [PushSource(store)]
