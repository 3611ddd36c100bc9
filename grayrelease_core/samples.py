"""Pushed metric samples: checking a batch an agent sends, and reading them back as series.

Samples land in ``gray_release_monitor`` through the store; the ``push`` metric source reads
them for the judge, and ``plan_metrics`` turns them into the console's gray-vs-baseline
charts beside every verdict.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from .errors import ValidationError
from .models import Plan, Sample
from .rules import rules_object
from .store import PlanStore
from .wire import log_to_wire, parse_time, timestamp

MAX_SAMPLES = 1000
"""Samples per request; an agent with more sends several requests."""
MAX_METRIC = 128
MAX_MAGNITUDE = 1e15
MAX_INSTANCE = 256
FUTURE_SLACK = timedelta(minutes=5)
"""How far ahead of the server's clock a sample's timestamp may be (clock skew)."""
SAMPLE_FIELDS = ("instanceId", "metric", "value", "gray", "timestamp", "events", "total")
VERDICT_ACTIONS = ("ANALYSIS_PASSED", "ANALYSIS_INCONCLUSIVE", "ANALYSIS_FAILED")
STEP_ACTIONS = ("STARTED", "STEPPED", "PROMOTED", "HELD", "AUTO_ROLLBACK", "COMPLETED")
MAX_SERIES_SAMPLES = 200_000
"""Samples read for one chart request; beyond it the answer says ``truncated``."""
MAX_RANGE = timedelta(days=31)
MAX_ROWS = 1000
"""Verdicts (and steps) per chart request: the newest of the range."""
DEFAULT_RANGE = timedelta(hours=6)


def parse_samples(
    body: Any,
    *,
    plan_id: str,
    now: datetime,
    oldest: datetime,
    members: Callable[[], frozenset[str]],
) -> list[Sample]:
    """Check every sample of ``body``; the first bad one refuses the whole batch, by name."""
    if isinstance(body, Mapping):
        unknown = sorted(str(key) for key in body if key != "samples")
        if unknown:
            raise ValidationError(unknown[0], 'unknown field; send {"samples": [...]}')
        if "samples" not in body:
            raise ValidationError("samples", "is required")
        body = body["samples"]
    if not isinstance(body, list):
        raise ValidationError("samples", "must be a list of samples", value=type(body).__name__)
    if not body:
        raise ValidationError("samples", "must hold at least one sample")
    if len(body) > MAX_SAMPLES:
        raise ValidationError(
            "samples", f"must hold at most {MAX_SAMPLES} samples per request", value=len(body)
        )
    known: frozenset[str] | None = None
    samples = []
    for index, raw in enumerate(body):
        field = f"samples[{index}]"
        raw = rules_object(raw, allowed=SAMPLE_FIELDS, required=(), field=field)
        instance = _text(raw.get("instanceId"), f"{field}.instanceId", MAX_INSTANCE)
        metric = _text(raw.get("metric"), f"{field}.metric", MAX_METRIC)
        events, total = _counts(raw, field)
        if "value" in raw or total is None:
            value = _number(raw.get("value"), f"{field}.value")
        else:
            assert events is not None
            value = events / total if total > 0 else 0.0
        gray = raw.get("gray")
        if gray is None:
            known = members() if known is None else known
            gray = instance in known
        elif not isinstance(gray, bool):
            raise ValidationError(f"{field}.gray", "must be true or false", value=gray)
        at = now if raw.get("timestamp") is None else _at(raw["timestamp"], f"{field}.timestamp")
        if at > now + FUTURE_SLACK:
            raise ValidationError(
                f"{field}.timestamp", "is in the future (check the agent's clock)", value=str(at)
            )
        if at < oldest:
            raise ValidationError(
                f"{field}.timestamp", "is older than the metric retention", value=str(at)
            )
        samples.append(Sample(plan_id, metric, value, gray, instance, at, events, total))
    return samples


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, "must be a number", value=value)
    if not abs(value) <= MAX_MAGNITUDE:  # before float(): a huge integer overflows it
        raise ValidationError(field, "must be a finite number within ±1e15", value=str(value))
    return float(value)


def _counts(raw: Mapping[str, Any], field: str) -> tuple[float | None, float | None]:
    """A counted sample's ``events`` of ``total`` (errors of requests over its interval)."""
    if "events" not in raw and "total" not in raw:
        return None, None
    for name in ("events", "total"):
        if name not in raw:
            raise ValidationError(f"{field}.{name}", "is required with events and total")
    events = _number(raw["events"], f"{field}.events")
    total = _number(raw["total"], f"{field}.total")
    if total < 0:
        raise ValidationError(f"{field}.total", "must not be negative", value=total)
    if not 0 <= events <= total:
        raise ValidationError(
            f"{field}.events", "must be from 0 to total (errors among the requests)", value=events
        )
    return events, total


def _text(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string", value=value)
    if len(value) > limit or any(ch < " " for ch in value):
        raise ValidationError(field, f"must be one line of at most {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "contains text that is not valid Unicode") from None
    return value.strip()


def _at(value: Any, field: str) -> datetime:
    """An ISO 8601 time with its zone, or Unix seconds (as Prometheus writes them)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(float(value)) or not 0 <= value <= 253_402_300_799:
            raise ValidationError(field, "must be Unix seconds or an ISO 8601 time", value=value)
        return datetime.fromtimestamp(float(value), UTC)
    return parse_time(value, field)


@attrs.frozen
class PlanMetrics:
    """A plan's charts: per metric, the gray and baseline means per time bucket."""

    plan_id: str
    since: datetime
    until: datetime
    bucket_seconds: int
    series: Mapping[str, Mapping[str, list[dict[str, Any]]]]
    verdicts: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    truncated: bool

    def to_wire(self) -> dict[str, Any]:
        return {
            "planId": self.plan_id,
            "since": timestamp(self.since),
            "until": timestamp(self.until),
            "bucketSeconds": self.bucket_seconds,
            "series": [
                {"metric": metric, "gray": groups["gray"], "baseline": groups["baseline"]}
                for metric, groups in sorted(self.series.items())
            ],
            "verdicts": self.verdicts,
            "steps": self.steps,
            "truncated": self.truncated,
        }


def plan_metrics(
    store: PlanStore,
    plan: Plan,
    *,
    now: datetime,
    since: datetime | None,
    until: datetime | None,
    bucket: int,
) -> PlanMetrics:
    if isinstance(bucket, bool) or not isinstance(bucket, int) or not 10 <= bucket <= 86_400:
        raise ValidationError("bucket", "must be a whole number of seconds from 10 to 86400")
    until = until or now + FUTURE_SLACK  # samples may carry a clock a little ahead of ours
    since = since or until - DEFAULT_RANGE
    if since >= until:
        raise ValidationError("since", "must be before until", value=timestamp(since))
    if until - since > MAX_RANGE:
        raise ValidationError("since", "the range may span at most 31 days")
    samples = store.samples([plan.id], None, since, until, limit=MAX_SERIES_SAMPLES + 1)
    truncated = len(samples) > MAX_SERIES_SAMPLES
    sums: dict[tuple[str, bool, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for sample in samples[:MAX_SERIES_SAMPLES]:
        slot = int((sample.at - since).total_seconds()) // bucket
        acc = sums[sample.metric, sample.gray, slot]
        acc[0] += sample.value
        acc[1] += 1
    series: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: {"gray": [], "baseline": []}
    )
    for (metric, gray, slot), (total, count) in sorted(sums.items()):
        series[metric]["gray" if gray else "baseline"].append(
            {
                "at": timestamp(since + timedelta(seconds=slot * bucket)),
                "mean": total / count,
                "count": int(count),
            }
        )
    # The newest rows of the range, shown oldest first; more than MAX_ROWS truncates.
    verdicts = store.list_logs(
        plan.id, 1, MAX_ROWS, actions=VERDICT_ACTIONS, since=since, until=until, newest_first=True
    )
    steps = store.list_logs(
        plan.id, 1, MAX_ROWS, actions=STEP_ACTIONS, since=since, until=until, newest_first=True
    )
    truncated = truncated or verdicts.total > MAX_ROWS or steps.total > MAX_ROWS
    return PlanMetrics(
        plan_id=plan.id,
        since=since,
        until=until,
        bucket_seconds=bucket,
        series=series,
        verdicts=[_verdict_to_wire(row) for row in reversed(verdicts.items)],
        steps=[_step_to_wire(row) for row in reversed(steps.items)],
        truncated=truncated,
    )


def _verdict_to_wire(row: Any) -> dict[str, Any]:
    wire = log_to_wire(row)
    return {
        "at": wire["at"],
        "action": wire["action"],
        "message": wire["message"],
        **(row.details or {}),
    }


def _step_to_wire(row: Any) -> dict[str, Any]:
    """Where the plan stood after a step: from the step's details, else the plan it saved."""
    details = row.details or {}
    after = row.after or {}
    progress = after.get("progress", {}) if isinstance(after, Mapping) else {}
    return {
        "at": timestamp(row.at),
        "action": row.action,
        "actor": row.actor,
        "percentage": details.get("toPercentage", progress.get("percentage")),
        "message": row.message,
    }
