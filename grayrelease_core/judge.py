"""The judge: one analysis interval's samples in, a verdict out (pass, inconclusive, fail).

Absolute checks compare the gray group with a fixed threshold: a value check its mean, a rate
check its pooled rate (all its events over all its requests). Relative checks compare the gray
group with the baseline:

- a **rate** check (``measure: rate``: errors of requests) adds each look's counts to a
  sequential test of the rate ratio (:mod:`~grayrelease_core.sequential`), looked at after
  every interval for the plan's whole life without spending ``alpha`` per look; it weighs
  instances by their traffic and corrects for their own error levels (its false alarms are
  proven at most ``alpha`` only for alike instances, and measured otherwise);
- a **value** check (one number per instance, e.g. a latency percentile) runs a one-sided
  Mann-Whitney U test per look, exact under ties, spending a share of ``alpha`` per look
  (:func:`~grayrelease_core.stats.alpha_for_look`); the means must also differ by more than
  the allowed increase.

Missing data is never a pass: a failed source, no gray instance, no requests or too few
instances makes a check inconclusive, and the plan holds. A relative check at 100% (no
baseline left) is skipped, and a verdict of skipped checks only is inconclusive too.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from .checks import Check
from .metrics import Observation
from .sequential import NO_COUNTS, CountSums, Evidence, observe, summed
from .stats import alpha_for_look, mann_whitney_greater, poisson_at_least
from .wire import timestamp


class Outcome(enum.StrEnum):
    """An interval's verdict, as Argo Rollouts and Kayenta have them."""

    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"
    SKIPPED = "SKIPPED"
    """A relative check at 100%: no baseline is left to compare with. Not a pass: a verdict
    whose every check is skipped is inconclusive."""


@attrs.frozen
class CheckResult:
    """One check's outcome, with every number that led to it (for the audit log)."""

    check: Check
    outcome: Outcome
    reason: str
    gray_count: int = 0
    """Gray instances that reported (with requests, for a rate check)."""
    baseline_count: int = 0
    gray_mean: float | None = None
    """The gray group's mean value, or pooled rate for a rate check."""
    baseline_mean: float | None = None
    u: float | None = None
    p_value: float | None = None
    alpha: float | None = None
    """The significance level this look spent (relative value checks), or the plan's whole
    ``alpha`` (relative rate checks: the sequential test spends nothing per look)."""
    gray_events: float | None = None
    gray_total: float | None = None
    baseline_events: float | None = None
    baseline_total: float | None = None
    dispersion: float | None = None
    evidence: Evidence | None = None
    """A relative rate check's sequential state after this look (saved with the plan)."""

    @property
    def spent_alpha(self) -> bool:
        """Whether a per-look test ran, which counts as a look for alpha spending (every test
        but the relative rate check's sequential one, which spends nothing per look)."""
        sequential = self.check.is_rate and self.check.max_increase is not None
        return self.p_value is not None and not sequential

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "metric": self.check.metric,
            "source": self.check.source,
            "kind": "relative" if self.check.max_increase is not None else "absolute",
            "measure": self.check.measure,
            "critical": self.check.critical,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "grayCount": self.gray_count,
            "baselineCount": self.baseline_count,
            "grayMean": self.gray_mean,
            "baselineMean": self.baseline_mean,
            "threshold": self.check.threshold,
            "maxIncrease": self.check.max_increase,
            "u": self.u,
            "pValue": self.p_value,
            "alpha": self.alpha,
        }
        if self.check.is_rate:
            wire |= {
                "grayEvents": self.gray_events,
                "grayTotal": self.gray_total,
                "baselineEvents": self.baseline_events,
                "baselineTotal": self.baseline_total,
                "dispersion": self.dispersion,
            }
            if self.evidence is not None:
                wire |= {
                    "looks": self.evidence.looks,
                    "eValue": _e_value(self.evidence),
                    "ratio": _finite(self.evidence.ratio),
                    "grayEventsSoFar": self.evidence.worse_events,
                    "eventsSoFar": self.evidence.events,
                }
        return wire


@attrs.frozen
class Verdict:
    """All checks of one analysis of one plan."""

    outcome: Outcome
    results: tuple[CheckResult, ...]
    look: int
    """Which analysis of the plan this is (1 for the first)."""
    start: datetime
    end: datetime

    @property
    def critical_failure(self) -> bool:
        return any(r.outcome is Outcome.FAIL and r.check.critical for r in self.results)

    @property
    def tested(self) -> bool:
        """Whether a per-look relative test ran: what counts as a look for alpha spending."""
        return any(r.spent_alpha for r in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.outcome is Outcome.FAIL)

    def summary(self) -> str:
        """One line for the audit log and notifications."""
        shown = [r for r in self.results if r.outcome is self.outcome] or list(self.results)
        reasons = "; ".join(f"{r.check.metric}: {r.reason}" for r in shown)
        return f"analysis {self.look} {self.outcome.value}: {reasons}"

    def to_wire(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "look": self.look,
            "windowStart": timestamp(self.start),
            "windowEnd": timestamp(self.end),
            "checks": [result.to_wire() for result in self.results],
        }


def evidence_key(index: int, check: Check) -> str:
    """Where a check's sequential evidence is kept in ``Progress.evidence``: a changed check
    starts its evidence afresh rather than take over another's."""
    return f"{index}:{check.metric}:{check.max_increase}"


def combine(results: Sequence[CheckResult], look: int, start: datetime, end: datetime) -> Verdict:
    """Any failed check fails the interval; otherwise any inconclusive one holds it, and so
    does a verdict with no check that decided (none, or every one skipped)."""
    outcomes = {result.outcome for result in results}
    if Outcome.FAIL in outcomes:
        outcome = Outcome.FAIL
    elif Outcome.INCONCLUSIVE in outcomes or Outcome.PASS not in outcomes:
        outcome = Outcome.INCONCLUSIVE
    else:
        outcome = Outcome.PASS
    return Verdict(outcome, tuple(results), look, start, end)


def judge_check(
    check: Check,
    observed: Observation | Exception,
    *,
    look: int,
    alpha: float,
    gray_instances: int | None = None,
    everyone_gray: bool = False,
    evidence: Evidence | None = None,
    until: datetime | None = None,
) -> CheckResult:
    """The outcome of ``check`` given what its source answered for this interval.

    ``gray_instances`` is how many instances are recorded as having received the gray value
    (``None``: unknown); with none, nothing is judged. ``evidence`` is a relative rate check's
    sequential state from the looks before this one, and ``until`` when this look's counts
    end (where the next look of a rate check starts). Every path that lacks the data to decide
    ends inconclusive: the checks before the statistics are the promise that missing data
    never passes.
    """
    relative = check.max_increase is not None
    if relative and everyone_gray:
        return CheckResult(
            check, Outcome.SKIPPED, "every client gets the gray value: no baseline to compare"
        )
    if isinstance(observed, Exception):
        return CheckResult(
            check, Outcome.INCONCLUSIVE, f"metric source {check.source} failed: {observed}"
        )
    if gray_instances == 0:
        return CheckResult(
            check, Outcome.INCONCLUSIVE, "no instance has received the gray value yet"
        )
    if check.is_rate:
        return _judge_rate(
            check,
            observed,
            look=look,
            alpha=alpha,
            evidence=evidence or Evidence(),
            until=None if until is None else until.timestamp(),
        )
    return _judge_values(check, observed, look=look, alpha=alpha, gray_instances=gray_instances)


def _judge_values(
    check: Check, observed: Observation, *, look: int, alpha: float, gray_instances: int | None
) -> CheckResult:
    """A value check: one number per instance (its mean over the window)."""
    gray = [value for value in observed.gray if math.isfinite(value)]
    baseline = [value for value in observed.baseline if math.isfinite(value)]
    gray_mean = _mean(gray)
    baseline_mean = _mean(baseline)
    result = functools.partial(
        CheckResult,
        check,
        gray_count=len(gray),
        baseline_count=len(baseline),
        gray_mean=gray_mean,
        baseline_mean=baseline_mean,
    )
    relative = check.max_increase is not None
    # An absolute check of a canary smaller than minSamples waits for all of its instances;
    # a relative one needs minSamples on each side, or the rank test cannot tell anything.
    needed = (
        check.min_samples
        if relative
        else max(1, min(check.min_samples, gray_instances or check.min_samples))
    )
    if len(gray) < needed:
        return result(
            Outcome.INCONCLUSIVE,
            f"{len(gray)} gray instances reported, fewer than {needed} (minSamples)",
        )
    assert gray_mean is not None
    worse = check.direction == "increase"
    if check.max_increase is None:
        assert check.threshold is not None
        beyond = gray_mean > check.threshold if worse else gray_mean < check.threshold
        relation = (">" if worse else "<") if beyond else ("<=" if worse else ">=")
        return result(
            Outcome.FAIL if beyond else Outcome.PASS,
            f"gray mean {gray_mean:.6g} {relation} threshold {check.threshold:.6g}",
        )
    if len(baseline) < check.min_samples:
        return result(
            Outcome.INCONCLUSIVE,
            f"{len(baseline)} baseline instances reported, fewer than minSamples "
            f"{check.min_samples}",
        )
    assert baseline_mean is not None
    spent = alpha_for_look(alpha, look)
    test = mann_whitney_greater(gray, baseline) if worse else mann_whitney_greater(baseline, gray)
    difference = gray_mean - baseline_mean if worse else baseline_mean - gray_mean
    allowed = check.max_increase * abs(baseline_mean)
    significant = test.p_value < spent
    fails = significant and difference > allowed
    word = "increase" if worse else "decrease"
    if fails:
        reason = (
            f"gray mean {gray_mean:.6g} vs baseline {baseline_mean:.6g}: a significant {word} "
            f"(p={test.p_value:.3g} < {spent:.3g}) beyond the allowed {check.max_increase:.0%}"
        )
    elif significant:
        reason = (
            f"gray mean {gray_mean:.6g} vs baseline {baseline_mean:.6g}: significant "
            f"(p={test.p_value:.3g}) but within the allowed {check.max_increase:.0%}"
        )
    else:
        reason = (
            f"gray mean {gray_mean:.6g} vs baseline {baseline_mean:.6g}: no significant {word} "
            f"(p={test.p_value:.3g}, needs < {spent:.3g})"
        )
    return result(
        Outcome.FAIL if fails else Outcome.PASS,
        reason,
        u=test.u,
        p_value=test.p_value,
        alpha=spent,
    )


def _judge_rate(
    check: Check,
    observed: Observation,
    *,
    look: int,
    alpha: float,
    evidence: Evidence,
    until: float | None,
) -> CheckResult:
    """A rate check: events out of requests, pooled over each group's instances."""
    gray = None if observed.gray_counts is None else summed(observed.gray_counts)
    baseline = NO_COUNTS if observed.baseline_counts is None else summed(observed.baseline_counts)
    if gray is None:
        return CheckResult(
            check,
            Outcome.INCONCLUSIVE,
            f"metric source {check.source} sent no counts (events and totals) for this rate check",
        )
    result = functools.partial(
        CheckResult,
        check,
        gray_count=gray.instances,
        baseline_count=baseline.instances,
        gray_mean=gray.rate,
        baseline_mean=baseline.rate,
        gray_events=gray.event_sum,
        gray_total=gray.total_sum,
        baseline_events=baseline.event_sum,
        baseline_total=baseline.total_sum,
    )
    if gray.total_sum <= 0:
        return result(Outcome.INCONCLUSIVE, "no gray requests counted in this interval")
    gray_rate = gray.event_sum / gray.total_sum
    if check.max_increase is None:
        assert check.threshold is not None
        return _rate_against_threshold(check, gray, gray_rate, look, alpha, result)
    if baseline.total_sum <= 0:
        return result(Outcome.INCONCLUSIVE, "no baseline requests counted in this interval")
    seen = observe(
        evidence, gray, baseline, max_increase=check.max_increase, alpha=alpha, until=until
    )
    after = seen.evidence
    overall = _pooled(after.worse_events, after.worse_total)
    other = _pooled(after.events - after.worse_events, after.other_total)
    ratio = after.ratio
    shown = "n/a" if ratio is None else f"{ratio:.3g}x"
    so_far = (
        f"gray rate {overall:.6g} vs baseline {other:.6g} over {after.looks} looks (ratio {shown})"
    )
    needed = 1.0 / alpha
    e_value = _e_value(after)
    allowed = f"{check.max_increase:.0%}"
    if seen.beyond:
        outcome = Outcome.FAIL
        reason = (
            f"{so_far}: a proven increase beyond the allowed {allowed} "
            f"(evidence {e_value:.3g} >= {needed:.3g})"
        )
    elif seen.rejected:
        outcome = Outcome.PASS
        reason = f"{so_far}: a proven increase, but within the allowed {allowed}"
    else:
        outcome = Outcome.PASS
        reason = (
            f"{so_far}: no evidence of an increase (evidence {e_value:.3g}, "
            f"fails at {needed:.3g} with a ratio above {1 + check.max_increase:.3g}x)"
        )
    return result(
        outcome,
        reason,
        p_value=after.p_value(),
        alpha=alpha,
        dispersion=seen.dispersion,
        evidence=after,
    )


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _rate_against_threshold(
    check: Check,
    gray: CountSums,
    gray_rate: float,
    look: int,
    alpha: float,
    result: functools.partial[CheckResult],
) -> CheckResult:
    """An absolute rate check: at or below ``threshold`` passes; above it fails only when so
    many events are unlikely at the threshold itself (Poisson, this look's share of
    ``alpha``): one error in a look of 40 requests is not a 2.5% error rate proven."""
    assert check.threshold is not None
    counted = f"gray rate {gray_rate:.6g} ({gray.event_sum:g} of {gray.total_sum:g})"
    if gray_rate <= check.threshold:
        return result(Outcome.PASS, f"{counted} <= threshold {check.threshold:.6g}")
    spent = alpha_for_look(alpha, look)
    p_value = poisson_at_least(gray.event_sum, check.threshold * gray.total_sum)
    if p_value < spent:
        return result(
            Outcome.FAIL,
            f"{counted} > threshold {check.threshold:.6g} beyond chance "
            f"(p={p_value:.3g} < {spent:.3g})",
            p_value=p_value,
            alpha=spent,
        )
    return result(
        Outcome.INCONCLUSIVE,
        f"{counted} > threshold {check.threshold:.6g}, but too few requests to tell it from "
        f"chance (p={p_value:.3g}, fails below {spent:.3g})",
        p_value=p_value,
        alpha=spent,
    )


def _pooled(events: float, total: float) -> float:
    return events / total if total > 0 else 0.0


def _e_value(evidence: Evidence) -> float:
    """The mixture likelihood ratio, capped for JSON (``inf`` is not a JSON number)."""
    return math.exp(min(evidence.log_mixture, 700.0))


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None
