"""One tick's analysis: ask every due check's metric source (once per source), then judge.

A look never straddles a step: it judges only samples taken since the current stage began
(``Progress.stage_started_at``). Within the stage, a value check reads its ``window`` (at
most the analysis interval) and a rate check reads the samples stamped since its counts last
ended, so the sequential test adds each request once.

A source that is missing, raises, or answers something other than an ``Observation`` of
numbers makes its checks inconclusive; one check whose judging fails makes only that check
inconclusive. Nothing here writes: the ticker saves the verdicts and the evidence.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, cast

from .checks import Check
from .judge import CheckResult, Outcome, Verdict, combine, evidence_key, judge_check
from .metrics import MetricQuery, MetricSource, MetricSourceError, Observation
from .models import Plan
from .sequential import Counts, CountSums, Evidence
from .store import PlanStore
from .strategy import StepSchedule
from .ticker import analysis_interval

log = logging.getLogger("grayrelease")
MAX_COUNT = 1e15
"""The largest count a source may answer (what ``push`` accepts): sums of larger ones could
overflow to infinity and turn the evidence into NaN."""


def analyze(
    plans: Sequence[tuple[Plan, StepSchedule | None]],
    sources: Mapping[str, MetricSource],
    store: PlanStore,
    now: datetime,
) -> dict[str, Verdict]:
    """The verdict of every plan in ``plans`` (each with ``autoRollback``) at ``now``."""
    if not plans:
        return {}
    looks = {
        (plan.id, index): _look(plan, index, check, analysis_interval(plan, schedule), now)
        for plan, schedule in plans
        for index, check in enumerate(plan.auto_rollback.checks if plan.auto_rollback else ())
    }
    answers = _ask(plans, looks, sources, store)
    recorded = store.instance_counts([plan.id for plan, _ in plans])
    verdicts: dict[str, Verdict] = {}
    for plan, _ in plans:
        assert plan.auto_rollback is not None
        look = plan.progress.analyses + 1
        results: list[CheckResult] = []
        starts: list[datetime] = []
        for index, check in enumerate(plan.auto_rollback.checks):
            evidence, start, end = looks[plan.id, index]
            starts.append(start)
            try:
                result = judge_check(
                    check,
                    answers[plan.id, index],
                    look=look,
                    alpha=plan.auto_rollback.alpha,
                    gray_instances=recorded.get(plan.id, 0),
                    everyone_gray=plan.progress.percentage >= 100,
                    evidence=evidence,
                    until=end,  # counted: the next look starts where this one ends
                )
            except Exception as exc:  # one check's bad data must not stop the others
                log.exception("grayrelease: judging check %d of plan %s failed", index, plan.id)
                result = CheckResult(check, Outcome.INCONCLUSIVE, f"judging failed: {exc}")
            results.append(result)
        verdicts[plan.id] = combine(results, look, min(starts, default=now), now)
    return verdicts


class _Look(NamedTuple):
    """One check's look: its stored evidence (rate checks) and its ``(start, end]``."""

    evidence: Evidence
    start: datetime
    end: datetime


def _look(plan: Plan, index: int, check: Check, interval: timedelta, now: datetime) -> _Look:
    """Read once per check and tick: the sources are asked for this window, and the judge
    continues from this evidence."""
    evidence = stored_evidence(plan, index, check)
    return _Look(evidence, *look_window(plan, check, interval, now, evidence))


def stored_evidence(plan: Plan, index: int, check: Check) -> Evidence:
    """A rate check's sequential state from the plan's progress (fresh before its first look)."""
    return Evidence.from_json((plan.progress.evidence or {}).get(evidence_key(index, check)))


def stage_start(plan: Plan, now: datetime) -> datetime:
    """When the current exposure began (plans saved before the column: the last analysis)."""
    return plan.progress.stage_started_at or plan.progress.analyzed_at or plan.started_at or now


def look_window(
    plan: Plan,
    check: Check,
    interval: timedelta,
    now: datetime,
    evidence: Evidence | None = None,
) -> tuple[datetime, datetime]:
    """``(start, now]`` of one check's look: nothing from before the stage began. A rate check
    starts where its counts last ended (``Evidence.until``), so each sample counts once and a
    look whose source failed is covered by the next."""
    since = stage_start(plan, now)
    if check.is_rate:
        counted = evidence.until if evidence is not None else None
        start = since if counted is None else max(since, datetime.fromtimestamp(counted, UTC))
    else:
        window = min(timedelta(minutes=check.window), interval) if check.window else interval
        start = max(since, now - window)
    return min(start, now), now


def _ask(
    plans: Sequence[tuple[Plan, StepSchedule | None]],
    looks: Mapping[tuple[str, int], _Look],
    sources: Mapping[str, MetricSource],
    store: PlanStore,
) -> dict[tuple[str, int], Observation | Exception]:
    """``{(plan id, check index): answer}``, each source asked once for all its checks."""
    asked: dict[str, list[tuple[str, int, MetricQuery]]] = defaultdict(list)
    for plan, _ in plans:
        assert plan.auto_rollback is not None
        members: dict[str, str] | None = None
        for index, check in enumerate(plan.auto_rollback.checks):
            source = sources.get(check.source)
            if members is None and getattr(source, "wants_instances", True):
                members = store.instance_addresses(plan.id)
            _, start, end = looks[plan.id, index]
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
        _numbers((*answer.gray, *answer.baseline))
        and _counts_ok(answer.gray_counts)
        and _counts_ok(answer.baseline_counts)
    ):
        return MetricSourceError(
            f"metric source {source} answered {type(answer).__name__}, not an Observation "
            "of numbers"
        )
    return answer


_NUMBERS = frozenset({int, float})


def _numbers(values: tuple[object, ...]) -> bool:
    """Every value an int or a float (never a bool): by type, in C, for 100,000s a tick."""
    return set(map(type, values)) <= _NUMBERS


def _counts_ok(counts: object) -> bool:
    """No counts; or events and totals per instance, paired; or their sums: from 0 to
    ``MAX_COUNT`` (each sum to ``MAX_COUNT`` squared)."""
    if counts is None:
        return True
    if isinstance(counts, CountSums):
        values: tuple[object, ...] = (
            counts.event_sum,
            counts.total_sum,
            counts.events_squared,
            counts.cross,
            counts.totals_squared,
        )
        limit = MAX_COUNT * MAX_COUNT
        if not isinstance(counts.instances, int) or counts.instances < 0:
            return False
    elif isinstance(counts, Counts) and len(counts.events) == len(counts.totals):
        values, limit = (*counts.events, *counts.totals), MAX_COUNT
    else:
        return False
    if not _numbers(values):
        return False
    numbers = cast(tuple[float, ...], values)
    # A NaN slips past min and max; their sum (finite for bounded values) catches it.
    return not numbers or (
        min(numbers) >= 0 and max(numbers) <= limit and math.isfinite(sum(numbers))
    )
