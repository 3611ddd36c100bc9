"""A sequential test of a rate ratio, for counted metrics (errors of requests).

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
check allows does not roll back.

**Instances differ.** The guarantee above holds when every request of a group fails alike.
Real instances each have their own error level, and an instance's level persists from look to
look while its Poisson noise does not: two canaries that happen to run 10% worse than the
fleet would, with enough traffic, "prove" a 10% regression the release did not cause. With
``c`` the squared coefficient of variation of the instances' levels, the count of a group
whose instance ``i`` expects ``mu_i`` events over all looks so far has variance
``sum mu_i (1 + c mu_i)``: beyond Poisson by the design effect of a cluster,
``1 + c sum(mu_i^2) / sum(mu_i)``. The evidence is therefore the mixture of the *cumulative*
log-likelihood ratios divided by the cumulative design effect ``phi`` (the quasi-likelihood
rule), where

- ``c`` is estimated by moments from every look's instances against their own group's rate
  (scaled by ``N / (N - 1)`` for the group mean it absorbs), never below ``C_FLOOR``;
- ``sum(mu_i^2) / sum(mu_i)`` is approximated by the sum over looks of each look's cluster size
  (:func:`cluster_size`), which is exact when the same instances carry the same traffic in
  every look and too large (cautious) when the gray group grows;
- the two groups' cluster sizes are weighted by the *other* group's share of requests, as they
  enter the variance of the log ratio.

With that, a persistent difference between instances adds evidence that levels off (at about
what a test across instances would say) instead of growing without bound, while a real
regression keeps adding evidence at the rate the instance-to-instance spread allows.

**What is proven and what is measured.** With ``floor`` 0 and instances that fail alike, the
design effect is 1 and the guarantee above is exact (Ville). With a design effect above 1 the
e-value at any one look still has expectation at most 1 (the ratio raised to ``1 / phi``,
Jensen), but a later look's larger ``phi`` also shrinks earlier evidence, so the process is
no longer a supermartingale and "at most ``alpha`` over every look" is not proven. The
default (``C_FLOOR``) trades that proof for robustness to instances that differ, and its false
alarms are measured instead: ``tests/test_sequential.py`` (alike and log-normal fleets, well
under ``alpha``) and the judge simulation (``make bench-judge``).

The state between looks is :class:`Evidence` (stored with the plan's progress): running sums,
so a look costs the same however long the plan has run.
"""

from __future__ import annotations

import functools
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
C_FLOOR = 0.05
"""The least squared coefficient of variation of instances' own levels assumed (about
+-22%): until the looks show how much the instances differ, they are not taken as alike."""

PRIOR_SQUARES = 100.0
"""How much the estimate of ``c`` leans on ``floor``: as much as instances expecting 100
events in all (one look of 100 instances expecting one each, or of one expecting ten)."""

_U = tuple(GRID_TOP * (j + 1) / GRID for j in range(GRID))
_RAW = tuple(math.exp(-(u * u) / (2 * PRIOR_SCALE * PRIOR_SCALE)) for u in _U)
_LOG_WEIGHTS = tuple(math.log(w / math.fsum(_RAW)) for w in _RAW)


@attrs.frozen
class CountSums:
    """One group's counts in one look, reduced to what the test reads: sums over the
    instances with requests. A store can compute them in SQL, so a tick reads two rows a
    plan instead of one per instance."""

    instances: int
    """Instances with requests (``total > 0``)."""
    event_sum: float
    total_sum: float
    events_squared: float
    """``sum e_i^2``, ``sum e_i t_i`` and ``sum t_i^2`` over the instances."""
    cross: float
    totals_squared: float

    @property
    def rate(self) -> float | None:
        return self.event_sum / self.total_sum if self.total_sum > 0 else None


NO_COUNTS = CountSums(0, 0.0, 0.0, 0.0, 0.0, 0.0)


@attrs.frozen
class Counts:
    """One group's events and exposures in one look, per instance."""

    events: tuple[float, ...]
    totals: tuple[float, ...]

    @functools.cached_property
    def sums(self) -> CountSums:
        used = [(e, t) for e, t in zip(self.events, self.totals, strict=True) if t > 0]
        return CountSums(
            len(used),
            math.fsum(e for e, _ in used),
            math.fsum(t for _, t in used),
            math.fsum(e * e for e, _ in used),
            math.fsum(e * t for e, t in used),
            math.fsum(t * t for _, t in used),
        )

    @property
    def event_sum(self) -> float:
        return self.sums.event_sum

    @property
    def total_sum(self) -> float:
        return self.sums.total_sum

    @property
    def rate(self) -> float | None:
        return self.sums.rate


def summed(counts: Counts | CountSums) -> CountSums:
    return counts.sums if isinstance(counts, Counts) else counts


@attrs.frozen
class Evidence:
    """A rate check's sequential state: what every look so far added up to."""

    log_ratios: tuple[float, ...] = (0.0,) * GRID
    """Per grid point, the sum over looks of the binomial log-likelihood ratio (undivided)."""
    looks: int = 0
    worse_events: float = 0.0
    """Events on the side that would be worse (gray, for an increase), over every look."""
    events: float = 0.0
    worse_total: float = 0.0
    other_total: float = 0.0
    ratio_numerator: float = 0.0
    """Mantel-Haenszel sums over looks: ``sum x (1 - q)`` and ``sum (n - x) q``."""
    ratio_denominator: float = 0.0
    excess_variance: float = 0.0
    """Moment sums for ``c`` over the looks so far: ``sum (e_i - mu_i)^2`` (scaled by
    ``N / (N - 1)`` per group) ``- sum mu_i``, and ``sum mu_i^2``, with ``mu_i`` from each
    group's own rate."""
    squared_means: float = 0.0
    clusters: float = 0.0
    """The sum over looks of each look's :func:`cluster_size`."""
    floor: float = C_FLOOR
    """The least ``c`` assumed (``C_FLOOR``; 0 takes the counts as Poisson until the looks
    show otherwise)."""
    until: float | None = None
    """Unix time up to which samples have been counted (the end of the last look whose counts
    were used): the next look starts here, so a look whose source failed loses nothing."""

    @property
    def ratio(self) -> float | None:
        """The Mantel-Haenszel estimate of ``rho`` over every look (``None`` before any
        event): consistent when the base rate changes from look to look, unlike the ratio
        of the pooled rates, which a load shift during a step would bias."""
        if self.ratio_denominator > 0:
            return self.ratio_numerator / self.ratio_denominator
        return math.inf if self.ratio_numerator > 0 else None

    @property
    def heterogeneity(self) -> float:
        """``c``: the squared coefficient of variation of the instances' levels, estimated
        from the looks so far, at least ``floor``."""
        # The estimate is shrunk towards the floor by PRIOR_SQUARES of pseudo-data: with a
        # few events per instance and look, squared deviations are mostly Poisson noise, and
        # an estimate blown up by it would cost power for nothing.
        shrunk = (self.excess_variance + self.floor * PRIOR_SQUARES) / (
            self.squared_means + PRIOR_SQUARES
        )
        return max(self.floor, shrunk)

    @property
    def dispersion(self) -> float:
        """``phi``, the cumulative design effect the log-likelihood ratios are divided by."""
        return 1.0 + self.heterogeneity * self.clusters

    @functools.cached_property
    def log_mixture(self) -> float:
        """``log`` of the mixture likelihood ratio (the e-value): 0 before any evidence."""
        phi = self.dispersion
        terms = [w + a / phi for w, a in zip(_LOG_WEIGHTS, self.log_ratios, strict=True)]
        top = max(terms)
        return top + math.log(math.fsum(math.exp(t - top) for t in terms))

    def p_value(self) -> float:
        """``min(1, 1 / e-value)``: it may be checked at any look. (An e-value far below 1,
        a release that fixes errors, is 1 here rather than an overflow.)"""
        return math.exp(-max(0.0, self.log_mixture))

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
            "excessVariance": self.excess_variance,
            "squaredMeans": self.squared_means,
            "clusters": self.clusters,
            "floor": self.floor,
            "until": self.until,
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
            float(raw.get("excessVariance", 0.0)),
            float(raw.get("squaredMeans", 0.0)),
            float(raw.get("clusters", 0.0)),
            float(raw.get("floor", C_FLOOR)),
            None if raw.get("until") is None else float(raw["until"]),
        )


@attrs.frozen
class Look:
    """What one look added, and where the evidence stands after it."""

    evidence: Evidence
    dispersion: float
    """``phi`` after this look."""
    rejected: bool
    """The e-value reached ``1 / alpha``: the worse side's rate exceeds the other's."""
    beyond: bool
    """Rejected, and the estimated ratio exceeds ``1 + maxIncrease``: the check fails."""


def moments(groups: Sequence[Counts | CountSums]) -> tuple[float, float]:
    """One look's moment sums for ``c`` (see :attr:`Evidence.excess_variance`): each instance
    against its own group's rate; a group's squared deviations are scaled by ``N / (N - 1)``
    (``N`` instances with requests), since its rate absorbs part of every instance's own
    deviation. A group of one instance says nothing about the spread. From the sums:
    ``sum (e - t r)^2 = sum e^2 - 2 r sum e t + r^2 sum t^2``."""
    excess = squares = 0.0
    for group in map(summed, groups):
        rate = group.rate
        if rate is None or rate <= 0 or group.instances < 2:
            continue
        spread = max(
            0.0,
            group.events_squared - 2 * rate * group.cross + rate * rate * group.totals_squared,
        )
        group_squares = rate * rate * group.totals_squared
        n = group.instances
        excess += spread * n / (n - 1) - rate * group.total_sum
        squares += group_squares
    return excess, squares


def cluster_size(worse: Counts | CountSums, other: Counts | CountSums, events: float) -> float:
    """How many of the look's ``events`` one instance's own level moves at once, as it enters
    the variance of the log ratio: each group's ``sum(mu_i^2) / sum(mu_i)`` (``mu_i`` the
    instance's share of ``events`` by its requests, so only the requests and the total, on
    which the test conditions, are used), weighted by the other group's share of requests."""
    worse, other = summed(worse), summed(other)
    everything = worse.total_sum + other.total_sum
    if everything <= 0 or events <= 0 or worse.total_sum <= 0 or other.total_sum <= 0:
        return 0.0
    per_request = events / everything

    def size(group: CountSums) -> float:
        return per_request * group.totals_squared / group.total_sum

    return (size(worse) * other.total_sum + size(other) * worse.total_sum) / everything


def observe(
    evidence: Evidence,
    worse: Counts | CountSums,
    other: Counts | CountSums,
    *,
    max_increase: float,
    alpha: float,
    floor: float | None = None,
    until: float | None = None,
) -> Look:
    """Add one look's counts (``worse``: the side whose higher rate is a regression).

    ``floor``: the least instance heterogeneity assumed, set on the first look (``C_FLOOR``
    unless given; 0 takes the counts as Poisson until the looks show otherwise). ``until``:
    the Unix time the look's counts end (kept as :attr:`Evidence.until`).
    """
    worse, other = summed(worse), summed(other)
    total_worse, total_other = worse.total_sum, other.total_sum
    x, n = worse.event_sum, worse.event_sum + other.event_sum
    ratios = evidence.log_ratios
    numerator, denominator = evidence.ratio_numerator, evidence.ratio_denominator
    clusters = evidence.clusters
    if total_worse > 0 and total_other > 0 and n > 0:
        q = total_worse / (total_worse + total_other)
        ratios = tuple(
            a + x * u - n * math.log(math.exp(u) * q + 1.0 - q)
            for a, u in zip(ratios, _U, strict=True)
        )
        numerator += x * (1.0 - q)
        denominator += (n - x) * q
        clusters += cluster_size(worse, other, n)
    excess, squares = moments((worse, other))
    updated = Evidence(
        ratios,
        evidence.looks + 1,
        evidence.worse_events + x,
        evidence.events + n,
        evidence.worse_total + total_worse,
        evidence.other_total + total_other,
        numerator,
        denominator,
        evidence.excess_variance + excess,
        evidence.squared_means + squares,
        clusters,
        evidence.floor if floor is None or evidence.looks else floor,
        evidence.until if until is None else until,
    )
    rejected = updated.log_mixture >= math.log(1.0 / alpha)
    ratio = updated.ratio
    beyond = rejected and ratio is not None and ratio > 1.0 + max_increase
    return Look(updated, updated.dispersion, rejected, beyond)
