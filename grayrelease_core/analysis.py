"""One tick's analysis: ask every due check's metric source (once per source), then judge.

A source that is missing, raises, or answers something other than an ``Observation`` of
numbers makes its checks inconclusive; one plan whose judging fails makes only that plan
inconclusive. Nothing here writes: the ticker saves the verdicts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from .judge import CheckResult, Outcome, Verdict, combine, judge_check
from .metrics import MetricQuery, MetricSource, MetricSourceError, Observation
from .models import Plan
from .store import PlanStore
from .strategy import StepSchedule
from .ticker import analysis_interval

log = logging.getLogger("grayrelease")


def analyze(
    plans: Sequence[tuple[Plan, StepSchedule | None]],
    sources: Mapping[str, MetricSource],
    store: PlanStore,
    now: datetime,
) -> dict[str, Verdict]:
    """The verdict of every plan in ``plans`` (each with ``autoRollback``) at ``now``."""
    if not plans:
        return {}
    answers = _ask(plans, sources, store, now)
    recorded = store.instance_counts([plan.id for plan, _ in plans])
    verdicts: dict[str, Verdict] = {}
    for plan, schedule in plans:
        assert plan.auto_rollback is not None
        look = plan.progress.analyses + 1
        interval = analysis_interval(plan, schedule)
        try:
            results: list[CheckResult] = [
                judge_check(
                    check,
                    answers[plan.id, index],
                    look=look,
                    alpha=plan.auto_rollback.alpha,
                    gray_instances=recorded.get(plan.id, 0),
                    everyone_gray=plan.progress.percentage >= 100,
                )
                for index, check in enumerate(plan.auto_rollback.checks)
            ]
        except Exception as exc:  # one plan's bad data must not stop the others' ticks
            log.exception("grayrelease: judging plan %s failed", plan.id)
            results = [
                CheckResult(check, Outcome.INCONCLUSIVE, f"judging failed: {exc}")
                for check in plan.auto_rollback.checks
            ]
        verdicts[plan.id] = combine(results, look, now - interval, now)
    return verdicts


def _ask(
    plans: Sequence[tuple[Plan, StepSchedule | None]],
    sources: Mapping[str, MetricSource],
    store: PlanStore,
    now: datetime,
) -> dict[tuple[str, int], Observation | Exception]:
    """``{(plan id, check index): answer}``, each source asked once for all its checks."""
    asked: dict[str, list[tuple[str, int, MetricQuery]]] = defaultdict(list)
    for plan, schedule in plans:
        assert plan.auto_rollback is not None
        interval = analysis_interval(plan, schedule)
        members: dict[str, str] | None = None
        for index, check in enumerate(plan.auto_rollback.checks):
            source = sources.get(check.source)
            if members is None and getattr(source, "wants_instances", True):
                members = store.instance_addresses(plan.id)
            window = timedelta(minutes=check.window) if check.window else interval
            query = MetricQuery(
                plan=plan,
                check=check,
                start=now - window,
                end=now,
                gray_instances=frozenset(members or ()),
                gray_ips=frozenset(ip for ip in (members or {}).values() if ip),
            )
            asked[check.source].append((plan.id, index, query))
    answers: dict[tuple[str, int], Observation | Exception] = {}
    for source_name, entries in asked.items():
        fetched = _fetch(sources.get(source_name), source_name, [q for _, _, q in entries])
        for (plan_id, index, _), answer in zip(entries, fetched, strict=True):
            answers[plan_id, index] = answer
    return answers


def _fetch(
    source: MetricSource | None, name: str, queries: list[MetricQuery]
) -> list[Observation | Exception]:
    """A source's answers; a missing or failing source answers every slot with its error."""
    if source is None:
        error = MetricSourceError(f"no metric source named {name!r} is installed or configured")
        return [error] * len(queries)
    try:
        answers = list(source.fetch(queries))
    except Exception as exc:
        log.exception("grayrelease: metric source %s failed", name)
        return [MetricSourceError(f"{type(exc).__name__}: {exc}")] * len(queries)
    if len(answers) != len(queries):
        error = MetricSourceError(
            f"metric source {name} answered {len(answers)} of {len(queries)} queries"
        )
        return [error] * len(queries)
    return [_checked(name, answer) for answer in answers]


def _checked(source: str, answer: object) -> Observation | Exception:
    """A source's answer for one slot, or the error that makes that slot inconclusive."""
    if isinstance(answer, Exception):
        return answer
    if not isinstance(answer, Observation) or not all(
        isinstance(value, int | float) and not isinstance(value, bool)
        for group in (answer.gray, answer.baseline)
        for value in group
    ):
        return MetricSourceError(
            f"metric source {source} answered {type(answer).__name__}, not an Observation "
            "of numbers"
        )
    return answer
