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
from grayrelease_core.judge import Outcome, combine, judge_check
from grayrelease_core.metrics import MetricSourceError, Observation
from grayrelease_core.stats import mann_whitney_greater
from grayrelease_core.strategy import StepSchedule
from grayrelease_core.ticker import Move, decide, due

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


# --- simulated canaries --------------------------------------------------------------------

INSTANCES = 100
CANARY_INSTANCES = 2
SAMPLES_PER_INSTANCE = 5
"""One sample a minute over a 5-minute analysis interval."""
REQUESTS = 600
BASE_ERROR_RATE = 0.01


def error_rate(rng: random.Random, rate: float) -> float:
    """One instance-minute's error rate: errors out of ``REQUESTS`` (normal approximation of
    the binomial, floored at zero, rounded to whole errors)."""
    mean = REQUESTS * rate
    errors = max(0, round(rng.gauss(mean, math.sqrt(mean * (1 - rate)))))
    return errors / REQUESTS


def simulate(rng: random.Random, gray_rate: float, *, intervals: int = 20) -> float | None:
    """One canary (20% steps every interval) judged each interval by the real judge and the
    real ticker decisions. Returns the percentage it was rolled back at, or ``None``."""
    schedule = StepSchedule(step_percentage=20, interval=5, max_percentage=100)
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
        auto_rollback=AutoRollback(checks=(RELATIVE,)),
        started_at=T0,
        progress=Progress(analyzed_at=T0, next_step_at=T0 + timedelta(minutes=5)),
    )
    now = T0
    for _ in range(intervals):
        now += timedelta(minutes=5)
        share = plan.progress.percentage / 100
        gray_count = CANARY_INSTANCES + round(share * (INSTANCES - CANARY_INSTANCES))
        gray_count = min(gray_count, INSTANCES - 10)  # keep a baseline to compare with
        gray = tuple(error_rate(rng, gray_rate) for _ in range(gray_count * SAMPLES_PER_INSTANCE))
        baseline = tuple(
            error_rate(rng, BASE_ERROR_RATE)
            for _ in range((INSTANCES - gray_count) * SAMPLES_PER_INSTANCE)
        )
        look = plan.progress.analyses + 1
        result = judge_check(RELATIVE, Observation(gray, baseline), look=look, alpha=0.025)
        verdict = combine([result], look, now - timedelta(minutes=5), now)
        decision = decide(plan, schedule, verdict, due(plan, schedule, now), now)
        if decision.move is Move.ROLLBACK:
            return plan.progress.percentage
        plan = attrs.evolve(plan, progress=decision.progress)
    return None


def test_with_no_real_difference_fewer_than_5_percent_of_canaries_roll_back() -> None:
    rng = random.Random(20261126)
    runs = 200
    rolled = sum(simulate(rng, BASE_ERROR_RATE) is not None for _ in range(runs))
    assert rolled / runs < 0.05


def test_naive_repeated_looks_would_raise_false_alarms_far_above_5_percent() -> None:
    """Why the judge spends alpha: testing each of 20 looks at 0.05 alarms most canaries."""
    rng = random.Random(4)
    runs, alarmed = 200, 0
    for _ in range(runs):
        for _ in range(20):
            gray = [error_rate(rng, BASE_ERROR_RATE) for _ in range(40)]
            baseline = [error_rate(rng, BASE_ERROR_RATE) for _ in range(200)]
            if mann_whitney_greater(gray, baseline).p_value < 0.05:
                alarmed += 1
                break
    assert alarmed / runs > 0.4


def test_a_doubled_error_rate_rolls_back_more_than_95_percent_of_canaries_before_50() -> None:
    rng = random.Random(20261127)
    runs = 300
    outcomes = [simulate(rng, 2 * BASE_ERROR_RATE) for _ in range(runs)]
    early = sum(at is not None and at < 50 for at in outcomes)
    assert early / runs > 0.95
