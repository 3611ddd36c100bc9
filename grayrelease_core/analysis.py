"""One tick's analysis: ask every due check's metric source (once per source), then judge.

A look never straddles a step: it judges only samples taken since the current stage began
(``Progress.stage_started_at``). Within the stage, a value check reads its ``window`` (at
most the analysis interval) and a rate check reads what arrived since the last look, so the
sequential test adds each request once.

A source that is missing, raises, or answers something other than an ``Observation`` of
numbers makes its checks inconclusive; one plan whose judging fails makes only that plan
inconclusive. Nothing here writes: the ticker saves the verdicts and the evidence.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from .checks import Check
from .judge import CheckResult, Outcome, Verdict, combine, evidence_key, judge_check
from .metrics import MetricQuery, MetricSource, MetricSourceError, Observation
from .models import Plan
from .sequential import Counts, Evidence
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
    for plan, _ in plans:
        assert plan.auto_rollback is not None
        look = plan.progress.analyses + 1
        stored = plan.progress.evidence or {}
        try:
            results: list[CheckResult] = [
                judge_check(
                    check,
                    answers[plan.id, index],
                    look=look,
                    alpha=plan.auto_rollback.alpha,
                    gray_instances=recorded.get(plan.id, 0),
                    everyone_gray=plan.progress.percentage >= 100,
                    evidence=Evidence.from_json(stored.get(evidence_key(index, check))),
                )
                for index, check in enumerate(plan.auto_rollback.checks)
            ]
        except Exception as exc:  # one plan's bad data must not stop the others' ticks
            log.exception("grayrelease: judging plan %s failed", plan.id)
            results = [
                CheckResult(check, Outcome.INCONCLUSIVE, f"judging failed: {exc}")
                for check in plan.auto_rollback.checks
            ]
        verdicts[plan.id] = combine(results, look, stage_start(plan, now), now)
    return verdicts


def stage_start(plan: Plan, now: datetime) -> datetime:
    """When the current exposure began (plans saved before the column: the last analysis)."""
    return plan.progress.stage_started_at or plan.progress.analyzed_at or plan.started_at or now


def look_window(
    plan: Plan, check: Check, interval: timedelta, now: datetime
) -> tuple[datetime, datetime]:
    """``(start, now]`` of one check's look: nothing from before the stage began."""
    since = stage_start(plan, now)
    if check.is_rate:
        last = plan.progress.analyzed_at
        start = max(since, last) if last is not None else since
    else:
        window = min(timedelta(minutes=check.window), interval) if check.window else interval
        start = max(since, now - window)
    return min(start, now), now


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
            start, end = look_window(plan, check, interval, now)
            query = MetricQuery(
                plan=plan,
                check=check,
                start=start,
                end=end,
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
    if not isinstance(answer, Observation) or not (
        all(_is_number(value) for group in (answer.gray, answer.baseline) for value in group)
        and all(_counts_ok(counts) for counts in (answer.gray_counts, answer.baseline_counts))
    ):
        return MetricSourceError(
            f"metric source {source} answered {type(answer).__name__}, not an Observation "
            "of numbers"
        )
    return answer


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _counts_ok(counts: object) -> bool:
    """No counts, or events and totals per instance: finite, not negative, paired."""
    if counts is None:
        return True
    if not isinstance(counts, Counts) or len(counts.events) != len(counts.totals):
        return False
    return all(
        _is_number(value) and math.isfinite(value) and value >= 0
        for value in (*counts.events, *counts.totals)
    )
