"""An anytime-valid sequential test of a rate ratio, for counted metrics (errors of requests).

**Model.** In one look the gray group served ``T_g`` requests with ``X_g`` errors, the baseline
``T_b`` with ``X_b``. If a gray request fails ``rho`` times as often as a baseline one (Poisson
counts), then given the look's ``n = X_g + X_b`` errors, ``X_g`` is binomial with
``p(rho) = rho q / (rho q + 1 - q)``, where ``q = T_g / (T_g + T_b)`` is the gray share of the
look's requests. Conditioning on ``n`` cancels all the two groups share: load, time of day, a
fleet-wide incident. An idle instance weighs what its requests weigh, not one vote.

**Test.** The null hypothesis is ``rho <= 1``: gray fails no more often than the baseline. For
any ``rho > 1`` the likelihood ratio of the looks so far against ``rho = 1``,
``prod rho^x * (1 / (rho q + 1 - q))^n``, is a nonnegative supermartingale under the null
(the binomial family is monotone in ``p``), and so is any mixture of them over ``rho``. By
Ville's inequality the mixture ever reaching ``1/alpha`` has probability at most ``alpha``,
however many looks there are and however they are spaced: no alpha spending, no fixed horizon
(Lindon, Sanden and Shirikian, KDD 2022, use the same idea for Poisson counts in canaries).
The mixture is a grid of ``rho`` above 1, weighted by a half-normal prior on ``log rho``
(scale ``PRIOR_SCALE``): most weight on the 1.2x to 3x regressions a canary exists to catch.

A check fails when the test rejects *and* the Mantel-Haenszel estimate of ``rho`` over all
looks (:attr:`Evidence.ratio`) exceeds ``1 + maxIncrease``: a proven increase within what the
check allows does not roll back. The rejection alone bounds false alarms by ``alpha``.

**Over-dispersion.** Instances differ in their own error rates, so counts vary more than
Poisson allows. Each look's log-likelihood ratios are divided by a dispersion factor
``phi >= 1``: Pearson's chi-square of the instances against their group's rate, over its
degrees of freedom (the quasi-likelihood rule). An instance's own level persists from look to
look while its Poisson noise does not, so the part of ``phi`` above 1 is scaled by how many
looks the current stage has lasted (``stage_looks``): the evidence of one stage is weighed as
if its looks were pooled, and a canary that merely runs on a noisier-than-average machine
does not pile up evidence look after look.

The state between looks is :class:`Evidence` (stored with the plan's progress): one running
sum per grid point, so a look costs the same however long the plan has run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

GRID = 48
"""Points of the mixture over ``log rho``."""
GRID_TOP = math.log(100.0)
"""The largest ratio the mixture weighs (100x)."""
PRIOR_SCALE = 0.8
"""Half-normal scale of the prior on ``log rho``: 1.2x to 3x get most weight."""
MAX_DISPERSION = 100.0

_U = tuple(GRID_TOP * (j + 1) / GRID for j in range(GRID))
_RAW = tuple(math.exp(-(u * u) / (2 * PRIOR_SCALE * PRIOR_SCALE)) for u in _U)
_LOG_WEIGHTS = tuple(math.log(w / math.fsum(_RAW)) for w in _RAW)


@attrs.frozen
class Counts:
    """One group's events and exposures in one look, per instance."""

    events: tuple[float, ...]
    totals: tuple[float, ...]

    @property
    def event_sum(self) -> float:
        return math.fsum(self.events)

    @property
    def total_sum(self) -> float:
        return math.fsum(self.totals)

    @property
    def rate(self) -> float | None:
        total = self.total_sum
        return self.event_sum / total if total > 0 else None


@attrs.frozen
class Evidence:
    """A rate check's sequential state: what every look so far added up to."""

    log_ratios: tuple[float, ...] = (0.0,) * GRID
    """Per grid point, the sum over looks of the (dispersion-scaled) log-likelihood ratio."""
    looks: int = 0
    worse_events: float = 0.0
    """Events on the side that would be worse (gray, for an increase), over every look."""
    events: float = 0.0
    worse_total: float = 0.0
    other_total: float = 0.0
    ratio_numerator: float = 0.0
    """Mantel-Haenszel sums over looks: ``sum x (1 - q)`` and ``sum (n - x) q``."""
    ratio_denominator: float = 0.0

    @property
    def ratio(self) -> float | None:
        """The Mantel-Haenszel estimate of ``rho`` over every look (``None`` before any
        event): consistent when the base rate changes from look to look, unlike the ratio
        of the pooled rates, which a load shift during a step would bias."""
        if self.ratio_denominator > 0:
            return self.ratio_numerator / self.ratio_denominator
        return math.inf if self.ratio_numerator > 0 else None

    @property
    def log_mixture(self) -> float:
        """``log`` of the mixture likelihood ratio (the e-value): 0 before any evidence."""
        top = max(w + a for w, a in zip(_LOG_WEIGHTS, self.log_ratios, strict=True))
        return top + math.log(
            math.fsum(
                math.exp(w + a - top) for w, a in zip(_LOG_WEIGHTS, self.log_ratios, strict=True)
            )
        )

    def p_value(self) -> float:
        """The anytime-valid p-value ``min(1, 1 / e-value)``: it may be checked at any look."""
        return min(1.0, math.exp(-self.log_mixture))

    def to_json(self) -> dict[str, Any]:
        return {
            "logRatios": [round(a, 12) for a in self.log_ratios],
            "looks": self.looks,
            "worseEvents": self.worse_events,
            "events": self.events,
            "worseTotal": self.worse_total,
            "otherTotal": self.other_total,
            "ratioNumerator": self.ratio_numerator,
            "ratioDenominator": self.ratio_denominator,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Evidence:
        if not raw:
            return cls()
        ratios = tuple(float(a) for a in raw.get("logRatios", ()))
        if len(ratios) != GRID:  # a grid from another version: start again, never guess
            return cls()
        return cls(
            ratios,
            int(raw.get("looks", 0)),
            float(raw.get("worseEvents", 0.0)),
            float(raw.get("events", 0.0)),
            float(raw.get("worseTotal", 0.0)),
            float(raw.get("otherTotal", 0.0)),
            float(raw.get("ratioNumerator", 0.0)),
            float(raw.get("ratioDenominator", 0.0)),
        )


@attrs.frozen
class Look:
    """What one look added, and where the evidence stands after it."""

    evidence: Evidence
    dispersion: float
    rejected: bool
    """The e-value reached ``1 / alpha``: the worse side's rate exceeds the other's, with at
    most ``alpha`` chance of saying so wrongly over the plan's whole life."""
    beyond: bool
    """Rejected, and the estimated ratio exceeds ``1 + maxIncrease``: the check fails."""


def dispersion(groups: Sequence[Counts]) -> float:
    """Pearson's chi-square of each instance against its own group's rate, pooled over the
    groups, per degree of freedom; at least 1 (Poisson), at most ``MAX_DISPERSION``."""
    chi_square = 0.0
    freedom = 0
    for group in groups:
        rate = group.rate
        used = [(e, t) for e, t in zip(group.events, group.totals, strict=True) if t > 0]
        if rate is None or rate <= 0 or len(used) < 2:
            continue
        chi_square += math.fsum((e - t * rate) ** 2 / (t * rate) for e, t in used)
        freedom += len(used) - 1
    if freedom == 0:
        return 1.0
    return min(MAX_DISPERSION, max(1.0, chi_square / freedom))


def observe(
    evidence: Evidence,
    worse: Counts,
    other: Counts,
    *,
    max_increase: float,
    alpha: float,
    stage_looks: float = 1.0,
) -> Look:
    """Add one look's counts (``worse``: the side whose higher rate is a regression).

    ``stage_looks``: how many looks' worth of time the current stage has lasted (at least 1),
    which scales the between-instance part of the dispersion (see the module's docstring).
    """
    total_worse, total_other = worse.total_sum, other.total_sum
    x, n = worse.event_sum, worse.event_sum + other.event_sum
    phi = 1.0 + (dispersion((worse, other)) - 1.0) * max(1.0, stage_looks)
    ratios = evidence.log_ratios
    numerator, denominator = evidence.ratio_numerator, evidence.ratio_denominator
    if total_worse > 0 and total_other > 0 and n > 0:
        q = total_worse / (total_worse + total_other)
        ratios = tuple(
            a + (x * u - n * math.log(math.exp(u) * q + 1.0 - q)) / phi
            for a, u in zip(ratios, _U, strict=True)
        )
        numerator += x * (1.0 - q)
        denominator += (n - x) * q
    updated = Evidence(
        ratios,
        evidence.looks + 1,
        evidence.worse_events + x,
        evidence.events + n,
        evidence.worse_total + total_worse,
        evidence.other_total + total_other,
        numerator,
        denominator,
    )
    rejected = updated.log_mixture >= math.log(1.0 / alpha)
    ratio = updated.ratio
    beyond = rejected and ratio is not None and ratio > 1.0 + max_increase
    return Look(updated, phi, rejected, beyond)
