"""The judge: each check's outcome from its samples, and what repeated looks do to false alarms.

The simulations run the real judge and the real ticker decisions over simulated traffic:
100 instances, each reporting its error rate once a minute from about 600 requests.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from grayrelease_core import Plan, PlanItem, PlanStatus, Progress
from grayrelease_core.checks import AutoRollback, Check
from grayrelease_core.judge import Outcome, combine, evidence_key, judge_check
from grayrelease_core.metrics import MetricSourceError, Observation
from grayrelease_core.sequential import Counts, Evidence
from grayrelease_core.stats import mann_whitney_greater
from grayrelease_core.strategy import StepSchedule
from grayrelease_core.ticker import Move, decide, due

from .judge_sim import poisson

RELATIVE = Check("errorRate", max_increase=0.1, min_samples=5)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_an_absolute_check_compares_the_gray_mean_with_the_threshold() -> None:
    check = Check("errorRate", threshold=0.05, min_samples=3)
    assert judge_check(check, Observation((0.04, 0.05, 0.06), ()), look=1, alpha=0.025).outcome is (
        Outcome.PASS
    )
    failed = judge_check(check, Observation((0.05, 0.06, 0.07), ()), look=1, alpha=0.025)
    assert failed.outcome is Outcome.FAIL
    assert failed.gray_mean == pytest.approx(0.06)
    orders = Check("orders", threshold=100, direction="decrease", min_samples=3)
    dropped = judge_check(orders, Observation((90.0, 95.0, 99.0), ()), look=1, alpha=0.025)
    assert dropped.outcome is Outcome.FAIL


def test_too_few_samples_or_a_failed_source_is_inconclusive() -> None:
    few = judge_check(RELATIVE, Observation((1.0,) * 4, (1.0,) * 50), look=1, alpha=0.025)
    assert few.outcome is Outcome.INCONCLUSIVE
    no_baseline = judge_check(RELATIVE, Observation((1.0,) * 50, (1.0,) * 4), look=1, alpha=0.025)
    assert no_baseline.outcome is Outcome.INCONCLUSIVE
    down = judge_check(RELATIVE, MetricSourceError("connection refused"), look=1, alpha=0.025)
    assert down.outcome is Outcome.INCONCLUSIVE
    assert "connection refused" in down.reason
    assert combine([], 1, T0, T0).outcome is Outcome.INCONCLUSIVE  # no checks ran: no pass


def test_a_relative_check_needs_significance_and_a_difference_beyond_the_allowed_one() -> None:
    rng = random.Random(11)
    baseline = tuple(rng.gauss(100, 5) for _ in range(400))
    slightly = tuple(rng.gauss(104, 5) for _ in range(400))  # significant, but only +4%
    clearly = tuple(rng.gauss(130, 5) for _ in range(400))
    within = judge_check(RELATIVE, Observation(slightly, baseline), look=1, alpha=0.025)
    assert within.outcome is Outcome.PASS
    assert within.p_value is not None
    assert within.p_value < 1e-6
    beyond = judge_check(RELATIVE, Observation(clearly, baseline), look=1, alpha=0.025)
    assert beyond.outcome is Outcome.FAIL
    assert beyond.alpha == pytest.approx(0.0125)
    better = judge_check(RELATIVE, Observation(baseline, clearly), look=1, alpha=0.025)
    assert better.outcome is Outcome.PASS  # an improvement is not a failure


def test_a_decrease_check_fails_when_the_gray_group_drops() -> None:
    rng = random.Random(12)
    check = Check("orders", max_increase=0.1, direction="decrease", min_samples=5)
    baseline = tuple(rng.gauss(100, 5) for _ in range(200))
    dropped = tuple(rng.gauss(70, 5) for _ in range(200))
    assert judge_check(check, Observation(dropped, baseline), look=1, alpha=0.025).outcome is (
        Outcome.FAIL
    )
    assert judge_check(check, Observation(baseline, dropped), look=1, alpha=0.025).outcome is (
        Outcome.PASS
    )


def test_missing_data_never_passes_a_check_or_a_verdict() -> None:
    """Invariant: a check that lacks the data to decide is INCONCLUSIVE, never PASS, and a
    verdict with no check that decided is INCONCLUSIVE (issue 17: a relative check of a
    two-instance canary was SKIPPED, and all-skipped combined to PASS)."""
    rng = random.Random(14)
    baseline = tuple(rng.gauss(100, 5) for _ in range(40))
    worse = tuple(rng.gauss(150, 5) for _ in range(40))
    everyone = judge_check(
        RELATIVE, Observation(worse, ()), look=1, alpha=0.025, everyone_gray=True
    )
    assert everyone.outcome is Outcome.SKIPPED  # no baseline left at 100%
    few = judge_check(
        RELATIVE, Observation(worse[:2], baseline), look=1, alpha=0.025, gray_instances=2
    )
    assert few.outcome is Outcome.INCONCLUSIVE
    assert "2 gray instances reported, fewer than 5" in few.reason
    judged = judge_check(
        RELATIVE, Observation(worse, baseline), look=1, alpha=0.025, gray_instances=40
    )
    assert judged.outcome is Outcome.FAIL
    nobody = judge_check(RELATIVE, Observation((), baseline), look=1, alpha=0.025, gray_instances=0)
    assert nobody.outcome is Outcome.INCONCLUSIVE  # no gray instance yet: nothing passes
    failed = judge_check(RELATIVE, MetricSourceError("down"), look=1, alpha=0.025)
    assert failed.outcome is Outcome.INCONCLUSIVE
    cap = Check("errorRate", threshold=120, min_samples=3)
    small = judge_check(cap, Observation(worse[:2], ()), look=1, alpha=0.025, gray_instances=2)
    assert small.outcome is Outcome.FAIL  # absolute checks judge a canary of two
    waiting = judge_check(cap, Observation(worse[:1], ()), look=1, alpha=0.025, gray_instances=2)
    assert waiting.outcome is Outcome.INCONCLUSIVE  # ...once both have reported
    assert combine([everyone], 1, T0, T0).outcome is Outcome.INCONCLUSIVE
    assert combine([], 1, T0, T0).outcome is Outcome.INCONCLUSIVE
    assert combine([everyone, few], 1, T0, T0).outcome is Outcome.INCONCLUSIVE
    assert combine([everyone, waiting], 1, T0, T0).outcome is Outcome.INCONCLUSIVE
    passed = judge_check(cap, Observation(baseline[:3], ()), look=1, alpha=0.025)
    assert combine([everyone, passed], 1, T0, T0).outcome is Outcome.PASS
    assert not combine([everyone, small], 1, T0, T0).tested


def test_later_looks_spend_less_alpha() -> None:
    rng = random.Random(13)
    baseline = tuple(rng.gauss(100, 10) for _ in range(60))
    gray = tuple(rng.gauss(112, 10) for _ in range(20))
    early = judge_check(RELATIVE, Observation(gray, baseline), look=1, alpha=0.025)
    late = judge_check(RELATIVE, Observation(gray, baseline), look=20, alpha=0.025)
    assert early.p_value == late.p_value
    assert early.alpha == pytest.approx(0.0125)
    assert late.alpha == pytest.approx(0.025 / 420)
    assert early.outcome is Outcome.FAIL
    assert late.outcome is Outcome.PASS


# --- rate checks: counts, pooled, tested sequentially -----------------------------------------

RATE = Check("errorRate", max_increase=0.2, measure="rate")


def counts(events: list[float], per_instance: float) -> Counts:
    return Counts(tuple(events), (per_instance,) * len(events))


def test_a_rate_check_weighs_instances_by_their_requests() -> None:
    """A busy instance's 300 errors of 30,000 and an idle one's 0 of 100 pool to 1%: not the
    unweighted mean of 0.5% the per-instance means would give."""
    cap = Check("errorRate", threshold=0.008, measure="rate")
    gray = Counts((300.0, 0.0), (30_000.0, 100.0))
    result = judge_check(cap, Observation((), (), gray, None), look=1, alpha=0.025)
    assert result.outcome is Outcome.FAIL
    assert result.gray_mean == pytest.approx(300 / 30_100)


def test_an_absolute_rate_check_fails_only_beyond_chance() -> None:
    """Issue 17 review: one error in a look of 40 requests is above a 2% threshold but proves
    nothing; with the default failureThreshold a FAIL would roll a healthy canary back."""
    cap = Check("errorRate", threshold=0.02, measure="rate")
    one_in_forty = judge_check(
        cap, Observation((), (), Counts((1.0,), (40.0,)), None), look=1, alpha=0.025
    )
    assert one_in_forty.outcome is Outcome.INCONCLUSIVE
    assert one_in_forty.p_value == pytest.approx(1 - math.exp(-0.8))
    at_threshold = judge_check(
        cap, Observation((), (), Counts((20.0,), (1000.0,)), None), look=1, alpha=0.025
    )
    assert at_threshold.outcome is Outcome.PASS
    far_above = judge_check(
        cap, Observation((), (), Counts((60.0,), (1000.0,)), None), look=1, alpha=0.025
    )
    assert far_above.outcome is Outcome.FAIL
    assert far_above.alpha == pytest.approx(0.0125)
    assert combine([far_above], 1, T0, T0).tested  # it spent this look's share


def test_a_rate_check_without_requests_or_counts_is_inconclusive() -> None:
    nothing = Counts((), ())
    cases = [
        Observation((0.01,), (0.01,)),  # values but no counts: a source that cannot count
        Observation((), (), nothing, counts([1.0], 600)),  # no gray requests
        Observation((), (), counts([1.0], 600), nothing),  # no baseline requests
        Observation((), (), counts([0.0], 0), counts([1.0], 600)),  # gray instance idle
    ]
    for observed in cases:
        result = judge_check(RATE, observed, look=1, alpha=0.025, gray_instances=1)
        assert result.outcome is Outcome.INCONCLUSIVE, observed
        assert result.evidence is None  # nothing added to the sequential test


def test_a_rate_check_accumulates_evidence_across_looks_until_it_fails() -> None:
    """Doubled errors on 2 gray instances against 20: no single look is decisive, the sum is."""
    rng = random.Random(5)
    evidence = Evidence()
    outcomes = []
    for _ in range(30):
        gray = counts([float(poisson(rng, 6.0)) for _ in range(2)], 600)
        baseline = counts([float(poisson(rng, 3.0)) for _ in range(20)], 600)
        result = judge_check(
            RATE, Observation((), (), gray, baseline), look=1, alpha=0.025, evidence=evidence
        )
        assert result.evidence is not None
        evidence = result.evidence
        outcomes.append(result.outcome)
        if result.outcome is Outcome.FAIL:
            break
    assert outcomes[0] is Outcome.PASS
    assert outcomes[-1] is Outcome.FAIL
    assert 1 < len(outcomes) < 30
    assert evidence.looks == len(outcomes)


# --- simulated canaries --------------------------------------------------------------------

INSTANCES = 100
CANARY_INSTANCES = 2
MINUTES = 5
"""The analysis interval."""
REQUESTS = 20
"""Requests per instance and minute: a quiet service."""
BASE_ERROR_RATE = 0.01
SPREAD = 0.25
"""Instances differ: each has its own error rate, log-normally around the fleet's (±25%)."""


def simulate(rng: random.Random, factor: float, *, intervals: int = 20) -> float | None:
    """One canary (2 canary instances, then 20% steps every interval) judged each interval by
    the real judge and the real ticker decisions, on each instance's error and request counts.
    The gray instances' error rate is ``factor`` times their own. Returns the percentage the
    canary was rolled back at, or ``None``."""
    levels = [BASE_ERROR_RATE * math.exp(rng.gauss(0, SPREAD)) for _ in range(INSTANCES)]
    schedule = StepSchedule(step_percentage=20, interval=MINUTES, max_percentage=100)
    plan = Plan(
        id="sim",
        name="sim",
        app_name="a",
        environment="prod",
        group_name="g",
        items=(PlanItem("k"),),
        strategy="CANARY",
        rules={},
        status=PlanStatus.ACTIVE,
        auto_rollback=AutoRollback(checks=(RATE,)),
        started_at=T0,
        progress=Progress(
            analyzed_at=T0, stage_started_at=T0, next_step_at=T0 + timedelta(minutes=MINUTES)
        ),
    )
    requests = REQUESTS * MINUTES
    now = T0
    for _ in range(intervals):
        now += timedelta(minutes=MINUTES)
        share = plan.progress.percentage / 100
        gray_count = CANARY_INSTANCES + round(share * (INSTANCES - CANARY_INSTANCES))
        events = [
            float(poisson(rng, requests * level * (factor if i < gray_count else 1.0)))
            for i, level in enumerate(levels)
        ]
        look = plan.progress.analyses + 1
        stored = plan.progress.evidence or {}
        result = judge_check(
            RATE,
            Observation(
                (), (), counts(events[:gray_count], requests), counts(events[gray_count:], requests)
            ),
            look=look,
            alpha=0.025,
            gray_instances=gray_count,
            everyone_gray=share >= 1,
            evidence=Evidence.from_json(stored.get(evidence_key(0, RATE))),
        )
        verdict = combine([result], look, now - timedelta(minutes=MINUTES), now)
        decision = decide(plan, schedule, verdict, due(plan, schedule, now), now)
        if decision.move is Move.ROLLBACK:
            return plan.progress.percentage
        plan = attrs.evolve(plan, progress=decision.progress)
    return None


def test_with_no_real_difference_fewer_than_5_percent_of_canaries_roll_back() -> None:
    rng = random.Random(20261126)
    runs = 400
    rolled = sum(simulate(rng, 1.0) is not None for _ in range(runs))
    assert rolled / runs < 0.05


def test_naive_repeated_looks_would_raise_false_alarms_far_above_5_percent() -> None:
    """Why the per-look rank test spends alpha: testing each of 20 looks at 0.05 alarms
    several times more healthy canaries than 5% (about a quarter here; fewer than with
    independent looks, since the same instances are gray at every look)."""
    rng = random.Random(4)
    runs, alarmed = 200, 0
    for _ in range(runs):
        levels = [BASE_ERROR_RATE * math.exp(rng.gauss(0, SPREAD)) for _ in range(INSTANCES)]
        for _ in range(20):
            rates = [poisson(rng, 3000 * level) / 3000 for level in levels]
            if mann_whitney_greater(rates[:20], rates[20:]).p_value < 0.05:
                alarmed += 1
                break
    assert alarmed / runs > 0.2


def test_a_doubled_error_rate_rolls_back_more_than_95_percent_of_canaries_before_50() -> None:
    """At 20 requests a minute per instance (issue 17: the per-instance rank test caught
    80.5% before 50% exposure)."""
    rng = random.Random(20261127)
    runs = 300
    outcomes = [simulate(rng, 2.0) for _ in range(runs)]
    early = sum(at is not None and at < 50 for at in outcomes)
    assert early / runs > 0.95


def test_a_release_that_fixes_errors_never_overflows_the_evidence() -> None:
    """Issue 17 review: the e-value of a gray group failing far less often than the baseline
    fell below exp(-709) and ``p_value`` raised OverflowError, making every check of the plan
    inconclusive for good."""
    gray = Counts((0.0,) * 1000, (1000.0,) * 1000)
    baseline = Counts((20.0,) * 1000, (1000.0,) * 1000)
    evidence = None
    for _ in range(3):
        result = judge_check(
            RATE, Observation((), (), gray, baseline), look=1, alpha=0.025, evidence=evidence
        )
        assert result.outcome is Outcome.PASS
        assert result.p_value == 1.0
        evidence = result.evidence
    assert evidence is not None
    assert evidence.log_mixture < -709
