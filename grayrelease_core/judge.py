"""The judge: one analysis interval's samples in, a verdict out (pass, inconclusive, fail).

Absolute checks compare the gray group's mean with a fixed threshold. Relative checks compare
the gray group with the baseline over the same window, as Kayenta does: a one-sided
Mann-Whitney U test says whether the gray samples tend to be worse, and the difference of the
means must also exceed the allowed increase. The judge looks again at every interval, so each
look spends a share of the plan's ``alpha`` (:func:`~grayrelease_core.stats.alpha_for_look`):
however many intervals a plan runs, the chance that a harmless change is ever rolled back by
a relative check stays at most ``alpha``.

Missing data is never a pass: too few samples, or a source that failed, makes the check
inconclusive, and the plan holds.
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
from .stats import alpha_for_look, mann_whitney_greater
from .wire import timestamp


class Outcome(enum.StrEnum):
    """An interval's verdict, as Argo Rollouts and Kayenta have them."""

    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"
    SKIPPED = "SKIPPED"
    """A relative check that cannot apply at this exposure (no baseline at 100%, or too few
    gray instances to compare); not part of the verdict."""


@attrs.frozen
class CheckResult:
    """One check's outcome, with every number that led to it (for the audit log)."""

    check: Check
    outcome: Outcome
    reason: str
    gray_count: int = 0
    baseline_count: int = 0
    gray_mean: float | None = None
    baseline_mean: float | None = None
    u: float | None = None
    p_value: float | None = None
    alpha: float | None = None
    """The significance level this look spent (relative checks)."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "metric": self.check.metric,
            "source": self.check.source,
            "kind": "relative" if self.check.max_increase is not None else "absolute",
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
        """Whether a relative test ran: what counts as a look for alpha spending."""
        return any(r.p_value is not None for r in self.results)

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


def combine(results: Sequence[CheckResult], look: int, start: datetime, end: datetime) -> Verdict:
    """Any failed check fails the interval; otherwise any inconclusive one holds it. Skipped
    checks do not count; with no check at all there is nothing to pass."""
    outcomes = {result.outcome for result in results}
    if Outcome.FAIL in outcomes:
        outcome = Outcome.FAIL
    elif Outcome.INCONCLUSIVE in outcomes or not results:
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
) -> CheckResult:
    """The outcome of ``check`` given what its source answered for this interval.

    Values are one per instance (see :class:`Observation`), so ``minSamples`` counts
    instances. ``gray_instances`` is how many instances are recorded as having received the
    gray value (``None``: unknown). A relative check is skipped while fewer than
    ``minSamples`` exist, or when everyone is gray (no baseline): no test could tell, and a
    canary of two instances must still be able to take its first step on its absolute checks.
    With no gray instance at all, nothing is judged and the check is inconclusive.
    """
    relative = check.max_increase is not None
    if relative and everyone_gray:
        return CheckResult(
            check, Outcome.SKIPPED, "every client gets the gray value: no baseline to compare"
        )
    if relative and gray_instances is not None and 0 < gray_instances < check.min_samples:
        return CheckResult(
            check,
            Outcome.SKIPPED,
            f"only {gray_instances} gray instances, fewer than minSamples {check.min_samples}: "
            "too few to compare (absolute checks still apply)",
        )
    if isinstance(observed, Exception):
        return CheckResult(
            check, Outcome.INCONCLUSIVE, f"metric source {check.source} failed: {observed}"
        )
    if gray_instances == 0:
        return CheckResult(
            check, Outcome.INCONCLUSIVE, "no instance has received the gray value yet"
        )
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
    # An absolute check of a canary smaller than minSamples waits for all of its instances.
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


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None
