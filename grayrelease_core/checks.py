"""A plan's automatic-rollback rules (``autoRollback``): the checks the ticker's judge runs."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ValidationError
from .rules import positive_int, rules_object

AUTO_ROLLBACK = "autoRollback"
BUILTIN_METRICS = ("errorRate", "responseTimeP99", "cpuUsage", "memoryUsage")
"""Metric names every source understands by convention: a fraction of failed requests,
the 99th percentile response time in milliseconds, CPU and memory use as fractions (0-1)."""
DIRECTIONS = ("increase", "decrease")
MEASURES = ("value", "rate")
"""``value``: one number per instance (its mean over the window), judged by a rank test;
``rate``: events out of a total (errors of requests), judged on the counts."""
DEFAULT_ALPHA = 0.025
"""One-sided 2.5%: with every look spending its share, fewer than 1 in 40 harmless releases
is ever rolled back by a relative check, however long it runs."""
MAX_CHECKS = 20
MAX_WINDOW_MINUTES = 24 * 60
MAX_QUERY = 4000
CHECK_FIELDS = (
    "metric",
    "source",
    "threshold",
    "maxIncrease",
    "direction",
    "window",
    "minSamples",
    "critical",
    "query",
    "baselineQuery",
    "measure",
    "totalQuery",
    "baselineTotalQuery",
)


@attrs.frozen
class Check:
    """One automatic-rollback rule of a plan (``autoRollback.checks[i]``)."""

    metric: str
    """The metric's name: one of ``BUILTIN_METRICS`` or a business metric a source provides."""
    source: str = "push"
    """Which metric source answers it (``push``, ``prometheus``, or a plugin's)."""
    threshold: float | None = None
    """Absolute rule: the gray group's mean beyond this value fails the check."""
    max_increase: float | None = None
    """Relative rule: the gray group against the baseline; a fraction (0.1 = 10% worse allowed)."""
    direction: str = "increase"
    """Which way is worse: ``increase`` (errors, latency) or ``decrease`` (orders, logins)."""
    window: int | None = None
    """Minutes of samples to judge; the plan's analysis interval when omitted."""
    min_samples: int = 3
    """Instances per group a check needs (an instance's samples count as one value); fewer
    reporting makes it inconclusive, never a pass (``grayrelease_core.judge.judge_check``)."""
    critical: bool = False
    """A failed critical check rolls the plan back at once, whatever ``failureThreshold`` says."""
    query: str | None = None
    """Source-specific query template for the gray group (PromQL for ``prometheus``)."""
    baseline_query: str | None = None
    """Source-specific query template for the baseline group."""
    measure: str = "value"
    """``value`` or ``rate`` (see ``MEASURES``). A rate check reads counts: a relative one is
    a sequential test of the rate ratio (:mod:`~.sequential`); an absolute one compares the
    gray group's pooled rate (events over total) with ``threshold``."""
    total_query: str | None = None
    """For a rate check on a query source: the template of the gray group's totals per
    instance (``query`` then counts its events)."""
    baseline_total_query: str | None = None
    """The same for the baseline group (``baselineQuery`` counts its events)."""

    @property
    def is_rate(self) -> bool:
        return self.measure == "rate"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "metric": self.metric,
            "source": self.source,
            "direction": self.direction,
            "minSamples": self.min_samples,
            "critical": self.critical,
        }
        if self.is_rate:
            wire["measure"] = self.measure
        for name, value in (
            ("threshold", self.threshold),
            ("maxIncrease", self.max_increase),
            ("window", self.window),
            ("query", self.query),
            ("baselineQuery", self.baseline_query),
            ("totalQuery", self.total_query),
            ("baselineTotalQuery", self.baseline_total_query),
        ):
            if value is not None:
                wire[name] = value
        return wire


@attrs.frozen
class AutoRollback:
    """A plan's automatic-rollback rules (``autoRollback``)."""

    checks: tuple[Check, ...] = ()
    failure_threshold: int = 1
    """Failed analysis intervals after which the plan rolls back."""
    interval: int | None = None
    """Minutes between analyses; the canary's ``stepInterval``, or 5, when omitted."""
    alpha: float = DEFAULT_ALPHA
    """Chance of a false alarm per relative check over the plan's whole life."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "checks": [check.to_wire() for check in self.checks],
            "failureThreshold": self.failure_threshold,
            "alpha": self.alpha,
        }
        if self.interval is not None:
            wire["interval"] = self.interval
        return wire


# --- parsing the wire form ---------------------------------------------------------------------


def parse_auto_rollback(value: Any) -> AutoRollback | None:
    """``autoRollback`` from a plan body: an object, or a bare list of checks, or null."""
    if value is None:
        return None
    if isinstance(value, list):
        value = {"checks": value}
    data = rules_object(
        value,
        allowed=("checks", "failureThreshold", "interval", "alpha"),
        required=("checks",),
        field=AUTO_ROLLBACK,
    )
    raw_checks = data["checks"]
    if not isinstance(raw_checks, list):
        raise ValidationError(f"{AUTO_ROLLBACK}.checks", "must be a list of checks")
    if len(raw_checks) > MAX_CHECKS:
        raise ValidationError(
            f"{AUTO_ROLLBACK}.checks",
            f"must hold at most {MAX_CHECKS} checks",
            value=len(raw_checks),
        )
    if not raw_checks:
        raise ValidationError(
            f"{AUTO_ROLLBACK}.checks",
            "must hold at least one check (send autoRollback: null to turn it off)",
        )
    checks = tuple(
        parse_check(raw, f"{AUTO_ROLLBACK}.checks[{index}]") for index, raw in enumerate(raw_checks)
    )
    alpha = data.get("alpha", DEFAULT_ALPHA)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 0.5:
        raise ValidationError(f"{AUTO_ROLLBACK}.alpha", "must be a number above 0 and at most 0.5")
    return AutoRollback(
        checks=checks,
        failure_threshold=positive_int(
            data.get("failureThreshold", 1), f"{AUTO_ROLLBACK}.failureThreshold", maximum=1000
        ),
        interval=(
            positive_int(data["interval"], f"{AUTO_ROLLBACK}.interval", maximum=MAX_WINDOW_MINUTES)
            if "interval" in data
            else None
        ),
        alpha=float(alpha),
    )


def parse_check(raw: Any, field: str) -> Check:
    data = rules_object(raw, allowed=CHECK_FIELDS, required=("metric",), field=field)
    metric = data["metric"]
    if not isinstance(metric, str) or not metric.strip() or len(metric) > 128:
        raise ValidationError(f"{field}.metric", "must be a metric name of 1 to 128 characters")
    source = data.get("source", "push")
    if not isinstance(source, str) or not source:
        raise ValidationError(f"{field}.source", "must name a metric source", value=source)
    threshold = _number(data, "threshold", field)
    max_increase = _number(data, "maxIncrease", field)
    if threshold is None and max_increase is None:
        raise ValidationError(field, "needs a threshold (absolute) or a maxIncrease (relative)")
    if threshold is not None and max_increase is not None:
        raise ValidationError(
            f"{field}.maxIncrease", "give either threshold or maxIncrease, not both"
        )
    if max_increase is not None and not 0 <= max_increase <= 100:
        raise ValidationError(
            f"{field}.maxIncrease", "must be a fraction from 0 to 100 (0.1 allows 10% worse)"
        )
    direction = data.get("direction", "increase")
    if direction not in DIRECTIONS:
        raise ValidationError(
            f"{field}.direction", f"must be one of {', '.join(DIRECTIONS)}", value=direction
        )
    critical = data.get("critical", False)
    if not isinstance(critical, bool):
        raise ValidationError(f"{field}.critical", "must be true or false", value=critical)
    measure = data.get("measure", "value")
    if measure not in MEASURES:
        raise ValidationError(
            f"{field}.measure", f"must be one of {', '.join(MEASURES)}", value=measure
        )
    if measure == "rate" and direction != "increase":
        raise ValidationError(
            f"{field}.direction",
            "a rate check counts bad events (errors of requests): its direction is increase",
            value=direction,
        )
    if measure == "rate" and threshold is not None and not 0 <= threshold <= 1:
        raise ValidationError(
            f"{field}.threshold", "a rate check's threshold is a fraction from 0 to 1"
        )
    for name in ("totalQuery", "baselineTotalQuery"):
        if name in data and measure != "rate":
            raise ValidationError(
                f"{field}.{name}", 'counts totals: only a check with "measure": "rate" has one'
            )
    return Check(
        metric=metric.strip(),
        source=source,
        threshold=threshold,
        max_increase=max_increase,
        direction=direction,
        window=(
            positive_int(data["window"], f"{field}.window", maximum=MAX_WINDOW_MINUTES)
            if "window" in data
            else None
        ),
        min_samples=positive_int(data.get("minSamples", 3), f"{field}.minSamples", maximum=10**6),
        critical=critical,
        query=_query(data, "query", field),
        baseline_query=_query(data, "baselineQuery", field),
        measure=measure,
        total_query=_query(data, "totalQuery", field),
        baseline_total_query=_query(data, "baselineTotalQuery", field),
    )


def _number(data: Mapping[str, Any], name: str, check: str) -> float | None:
    """An optional number: absent is ``None``; present, it must be a finite number."""
    if name not in data:
        return None
    value, field = data[name], f"{check}.{name}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, "must be a number", value=value)
    # Compared before float(): a 400-digit integer would overflow it; NaN fails the comparison.
    if not abs(value) <= 1e15:
        raise ValidationError(field, "must be a finite number", value=str(value))
    return float(value)


def _query(data: Mapping[str, Any], name: str, check: str) -> str | None:
    if name not in data:
        return None
    value, field = data[name], f"{check}.{name}"
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_QUERY:
        raise ValidationError(field, f"must be a query of 1 to {MAX_QUERY} characters")
    return value


def auto_rollback_from_json(data: Mapping[str, Any] | None) -> AutoRollback | None:
    """The stored wire form back into the model (the store keeps ``to_wire()``).

    Cached by content: the store reads every live plan at each index rebuild, and most plans
    share a handful of rule sets."""
    if data is None:
        return None
    return _parsed(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> AutoRollback | None:
    return parse_auto_rollback(json.loads(text))
