"""The canary judge's statistics: checked against SciPy, brute force and simulation."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction
from itertools import combinations

import numpy as np
import pytest
import scipy.stats  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from grayrelease_core import stats
from grayrelease_core.stats import (
    EXACT_MAX_PAIRS,
    MannWhitney,
    alpha_for_look,
    mann_whitney_greater,
    normal_sf,
)

# Reference values below come from SciPy 1.17.1:
# ``scipy.stats.mannwhitneyu(x, y, alternative="greater", method=<method>)`` (use_continuity is
# left at its default, True), the statistic and p-value printed with ``repr(float(...))``.
# Where SciPy is cheap enough it is also called live: it is in the ``test`` extra.
# Our exact p-values are a correctly rounded ratio of integers and SciPy's are sums of floats,
# and the asymptotic ones differ only in erfc vs ndtr, so they agree to ~1e-14; rel=1e-9
# leaves room for libm differences while still catching any change in the formulas.
REL = 1e-9

DIABETES_MALES = [19, 22, 16, 29, 24]  # SciPy's own docstring example
DIABETES_FEMALES = [20, 11, 17, 12]
X20 = [1.5 * i for i in range(20)]  # no value repeats in X20 + Y20 or X20 + Y21
Y20 = [1.1 * i + 0.3 for i in range(20)]
Y21 = [1.1 * i + 0.3 for i in range(21)]
# Error counts per request window: mostly zeros, so nearly everything is tied.
ERRORS_CANARY = [0.0] * 30 + [1.0] * 7 + [2.0] * 3
ERRORS_CANARY_BAD = [0] * 20 + [1] * 10 + [2] * 6 + [4] * 4
ERRORS_BASELINE = [0.0] * 100 + [1.0] * 15 + [2.0] * 4 + [3.0]
# 30 canary values against 300 baseline values, with a few ties among them.
CANARY_30 = [((i * 37) % 101) / 10 + 1.0 for i in range(30)]
CANARY_30_SLOW = [((i * 37) % 101) / 10 + 4.0 for i in range(30)]
BASELINE_300 = [((j * 53) % 307) / 30 for j in range(300)]


@pytest.mark.parametrize(
    ("x", "y", "u", "p_value"),
    [
        (DIABETES_MALES, DIABETES_FEMALES, 17.0, 0.05555555555555555),
        ([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], 25.0, 0.003968253968253968),
        ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 0.0, 1.0),
        ([2.0], [1.0], 1.0, 0.5),
        ([4.5, 9.25, 11.0], [0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12], 26.0, 0.14725274725274728),
        (X20, Y20, 246.0, 0.11053231771179246),
    ],
    ids=["scipy-docstring", "complete-separation", "reverse-separation", "one-vs-one",
         "3-vs-12", "20-vs-20"],
)  # fmt: skip
def test_exact_p_value_matches_scipy_exact_for_small_samples_without_ties(
    x: list[float], y: list[float], u: float, p_value: float
) -> None:
    result = mann_whitney_greater(x, y)
    assert result.exact
    assert result.u == u
    assert result.z == 0.0
    assert result.p_value == pytest.approx(p_value, rel=REL)


@pytest.fixture
def no_exact_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tied samples take the normal approximation, as they do beyond the exact limits."""
    monkeypatch.setattr(stats, "EXACT_MAX_SPLITS", 0)


@pytest.mark.parametrize(
    ("x", "y", "u", "p_value"),
    [
        (X20, Y21, 251.0, 0.14541054691475153),
        (ERRORS_CANARY, ERRORS_BASELINE, 2603.5, 0.11935646132925692),
        (ERRORS_BASELINE, ERRORS_CANARY, 2196.5, 0.8817962247132161),
        (ERRORS_CANARY_BAD, ERRORS_BASELINE, 3257.0, 4.204041205013302e-06),
        (CANARY_30, BASELINE_300, 5145.5, 0.09773917711873281),
        (BASELINE_300, CANARY_30, 3854.5, 0.9026067609660986),
        (CANARY_30_SLOW, BASELINE_300, 7214.5, 2.5597839198214597e-08),
        ([1, 2, 2, 3], [0, 1, 2], 9.5, 0.13318996167124125),
    ],
    ids=["20-vs-21-no-ties", "error-counts", "error-counts-swapped", "error-counts-worse",
         "30-vs-300", "300-vs-30", "30-vs-300-far-tail", "small-with-ties"],
)  # fmt: skip
def test_normal_approximation_matches_scipy_asymptotic_with_ties_and_unequal_sizes(
    x: list[float], y: list[float], u: float, p_value: float, no_exact_ties: None
) -> None:
    result = mann_whitney_greater(x, y)
    assert not result.exact
    assert result.u == u
    assert result.p_value == pytest.approx(p_value, rel=REL)


@pytest.mark.parametrize(
    ("x", "y", "z"),
    [
        # scipy.stats.norm.isf(p) of SciPy's p-value: the z that p came from, found independently.
        (ERRORS_CANARY, ERRORS_BASELINE, 1.1782099353618491),
        (BASELINE_300, CANARY_30, -1.2965488022189002),
        (CANARY_30_SLOW, BASELINE_300, 5.447106964691658),
    ],
)
def test_z_is_the_continuity_corrected_score_behind_the_p_value(
    x: list[float], y: list[float], z: float, no_exact_ties: None
) -> None:
    assert mann_whitney_greater(x, y).z == pytest.approx(z, rel=REL)


def test_exact_distribution_is_used_up_to_the_pair_limit_and_not_beyond() -> None:
    assert len(X20) * len(Y20) == EXACT_MAX_PAIRS
    assert mann_whitney_greater(X20, Y20).exact
    assert not mann_whitney_greater(X20, Y21).exact


def test_ties_in_small_samples_are_counted_exactly() -> None:
    result = mann_whitney_greater([1.0, 2.0, 3.0], [3.0, 4.0])
    assert result.exact
    assert result.u == 0.5
    assert result.z == 0.0
    assert result.p_value == _brute_force_null([1.0, 2.0, 3.0], [3.0, 4.0])[0] == 1.0


def _u(x: list[float], y: list[float]) -> float:
    return sum((a > b) + (a == b) / 2 for a in x for b in y)


def _brute_force_null(x: list[float], y: list[float]) -> tuple[float, float]:
    """``(P(U >= u), P(U = u))`` over every split of the pooled values: the null by definition."""
    pooled = x + y
    observed = _u(x, y)
    indices = range(len(pooled))
    total = at_least = equal = 0
    for chosen in combinations(indices, len(x)):
        picked = set(chosen)
        first = [pooled[i] for i in chosen]
        second = [pooled[i] for i in indices if i not in picked]
        u = _u(first, second)
        total += 1
        at_least += u >= observed
        equal += u == observed
    return at_least / total, equal / total


def _null_by_tie_groups(x: list[float], y: list[float]) -> tuple[Fraction, Fraction]:
    """``(P(U >= u), P(U = u))`` summed over how many of ``x``'s values fall in each tie group.

    A second count, written another way than the library's (U itself rather than rank sums,
    ``x`` whatever its size, every split of the counts visited and none merged or skipped),
    for samples too large to enumerate value by value.
    """
    pooled = Counter(x + y)
    sizes = [pooled[value] for value in sorted(pooled)]
    observed = round(2 * _u(x, y))
    at_least = equal = 0

    def visit(group: int, left: int, y_below: int, doubled_u: int, ways: int) -> None:
        nonlocal at_least, equal
        if group == len(sizes):
            if left:
                return  # fewer values than x has: not a split
            at_least += ways * (doubled_u >= observed)
            equal += ways * (doubled_u == observed)
            return
        size = sizes[group]
        if left > sum(sizes[group:]):
            return
        for k in range(min(size, left) + 1):
            # Each of the k values beats the y values below and ties the size - k others here.
            visit(
                group + 1,
                left - k,
                y_below + size - k,
                doubled_u + k * (2 * y_below + size - k),
                ways * math.comb(size, k),
            )

    visit(0, len(x), 0, 0, 1)
    total = math.comb(len(x) + len(y), len(x))
    return Fraction(at_least, total), Fraction(equal, total)


distinct_pair = st.lists(
    st.integers(min_value=-1000, max_value=1000), min_size=2, max_size=11, unique=True
).flatmap(
    lambda values: st.integers(min_value=1, max_value=len(values) - 1).map(
        lambda cut: ([float(v) for v in values[:cut]], [float(v) for v in values[cut:]])
    )
)


@settings(max_examples=60, deadline=None)
@given(distinct_pair)
def test_exact_p_value_equals_brute_force_permutation_count(
    samples: tuple[list[float], list[float]],
) -> None:
    x, y = samples
    result = mann_whitney_greater(x, y)
    assert result.exact
    # Both sides are one correctly rounded division of the same rational number.
    assert result.p_value == _brute_force_null(x, y)[0]


@settings(max_examples=100, deadline=None)
@given(distinct_pair)
def test_exact_one_sided_p_values_of_both_directions_overlap_by_the_mass_at_u(
    samples: tuple[list[float], list[float]],
) -> None:
    # P(U >= u) + P(U' >= n1*n2 - u) = P(U >= u) + P(U <= u) = 1 + P(U = u) > 1.
    x, y = samples
    forward = mann_whitney_greater(x, y).p_value
    backward = mann_whitney_greater(y, x).p_value
    assert forward + backward == pytest.approx(1.0 + _brute_force_null(x, y)[1], abs=1e-12)


def _scipy_permutation_p(x: list[float], y: list[float]) -> float:
    """SciPy's exact permutation p-value: every split of the pooled values, enumerated."""
    method = scipy.stats.PermutationMethod(n_resamples=np.inf)
    result = scipy.stats.mannwhitneyu(x, y, alternative="greater", method=method)
    return float(result.pvalue)


def _scipy_asymptotic_p(x: list[float], y: list[float]) -> float:
    result = scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic")
    return float(result.pvalue)


def _tied_pair(draw: random.Random, max_size: int) -> tuple[list[float], list[float]]:
    """Two small samples from 1 to 4 distinct values (ties certain), either the larger."""
    choices = [float(v) for v in draw.sample(range(-5, 6), draw.randint(1, 4))]
    # SciPy's permutation test wants two values a sample; four in all make a tie likely.
    n1 = draw.randint(2, max_size - 2)
    n2 = draw.randint(2, max_size - n1)
    return draw.choices(choices, k=n1), draw.choices(choices, k=n2)


@pytest.mark.parametrize("seed", range(12))
def test_tied_p_value_matches_scipy_permutation_test(seed: int) -> None:
    # Seeded, one seed per test id, so a failure is replayed by rerunning that id.
    draw = random.Random(seed)
    for _ in range(15):
        x, y = _tied_pair(draw, max_size=13)
        result = mann_whitney_greater(x, y)
        assert result.exact, (seed, x, y)
        assert result.z == 0.0
        assert result.p_value == pytest.approx(_scipy_permutation_p(x, y), rel=REL), (seed, x, y)


@pytest.mark.parametrize("seed", range(12))
def test_tied_p_value_equals_brute_force_and_the_count_by_tie_groups(seed: int) -> None:
    draw = random.Random(1000 + seed)
    for _ in range(15):
        x, y = _tied_pair(draw, max_size=11)
        at_least, _ = _null_by_tie_groups(x, y)
        p_value = mann_whitney_greater(x, y).p_value
        # All three are one correctly rounded division of the same rational number.
        assert p_value == _brute_force_null(x, y)[0] == float(at_least), (seed, x, y)


# 3 gray instances against 97 baseline instances, error rates mostly zero: a lone nonzero rate
# on each side (issue 17). The normal approximation put p at 5.3e-5, rolling back a canary
# that did nothing unusual; SciPy's permutation test (PermutationMethod(n_resamples=inf),
# 161700 splits) gives 0.059393939393939395 = 49/825.
GRAY_3 = [0.0, 0.0, 0.02]
BASELINE_97 = [0.0] * 96 + [0.02]


def test_three_gray_instances_with_one_error_rate_like_the_baseline_are_not_significant() -> None:
    result = mann_whitney_greater(GRAY_3, BASELINE_97)
    assert result.exact
    assert result.u == 192.5
    assert 0.03 <= result.p_value <= 0.1
    assert result.p_value == pytest.approx(0.059393939393939395, rel=REL)
    assert result.p_value == float(_null_by_tie_groups(GRAY_3, BASELINE_97)[0]) == 49 / 825


def test_three_gray_instances_were_far_too_significant_by_the_normal_approximation(
    no_exact_ties: None,
) -> None:
    result = mann_whitney_greater(GRAY_3, BASELINE_97)
    assert not result.exact
    assert result.p_value == pytest.approx(5.340166967070452e-05, rel=1e-6)


@pytest.mark.parametrize(
    ("gray", "baseline", "p_value"),
    [
        # The gray rate above the baseline's: only splits that give x the top value count.
        ([0.0, 0.0, 0.05], [0.0] * 96 + [0.01], 0.03),
        ([0.0, 0.0, 0.01], [0.0] * 96 + [0.05], 0.059393939393939395),
        # The other direction, as the judge asks for metrics where smaller is worse.
        ([0.0] * 96 + [0.02], [0.0, 0.0, 0.02], 0.9993939393939394),
    ],
)  # SciPy 1.17.1, PermutationMethod(n_resamples=inf)
def test_lone_nonzero_rates_against_a_large_baseline_are_exact(
    gray: list[float], baseline: list[float], p_value: float
) -> None:
    result = mann_whitney_greater(gray, baseline)
    assert result.exact
    assert result.p_value == pytest.approx(p_value, rel=REL)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (ERRORS_CANARY, ERRORS_BASELINE),
        (ERRORS_CANARY_BAD, ERRORS_BASELINE),
        ([1.0, 2.0, 2.0, 3.0], [0.0, 1.0, 2.0]),
    ],
    ids=["error-counts", "error-counts-worse", "small-with-ties"],
)
def test_error_counts_are_counted_exactly(x: list[float], y: list[float]) -> None:
    result = mann_whitney_greater(x, y)
    assert result.exact
    assert result.p_value == float(_null_by_tie_groups(x, y)[0])


def test_error_counts_both_directions_overlap_by_the_mass_at_u() -> None:
    # The swapped call counts the smaller sample, ERRORS_CANARY, in descending order.
    at_least, at_u = _null_by_tie_groups(ERRORS_CANARY, ERRORS_BASELINE)
    forward = mann_whitney_greater(ERRORS_CANARY, ERRORS_BASELINE)
    backward = mann_whitney_greater(ERRORS_BASELINE, ERRORS_CANARY)
    assert forward.exact
    assert backward.exact
    assert forward.p_value == float(at_least)
    assert backward.p_value == float(1 - at_least + at_u)


@pytest.mark.parametrize("seed", range(4))
def test_twenty_gray_against_two_thousand_with_few_values_is_exact(seed: int) -> None:
    # The range: n1 <= ~20, N up to ~2000, few distinct values (here five).
    draw = random.Random(seed)
    values = [0.0, 0.01, 0.02, 0.05, 0.1]
    baseline = draw.choices(values, weights=[80, 10, 5, 3, 2], k=1980)
    gray = draw.choices(values, weights=[60, 15, 10, 10, 5], k=20)
    result = mann_whitney_greater(gray, baseline)
    assert result.exact, seed
    assert result.p_value == float(_null_by_tie_groups(gray, baseline)[0]), seed


def test_over_the_work_budget_falls_back_to_the_normal_approximation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stats, "EXACT_MAX_WORK", 10)
    result = mann_whitney_greater(ERRORS_CANARY, ERRORS_BASELINE)
    assert not result.exact
    assert result.p_value == pytest.approx(0.11935646132925692, rel=REL)  # SciPy asymptotic


def test_large_untied_samples_keep_the_normal_approximation() -> None:
    draw = random.Random(17)
    x = [draw.gauss(101.0, 15.0) for _ in range(150)]
    y = [draw.gauss(100.0, 15.0) for _ in range(400)]
    result = mann_whitney_greater(x, y)
    assert not result.exact
    assert result.p_value == pytest.approx(_scipy_asymptotic_p(x, y), rel=REL)


def test_large_samples_with_many_distinct_tied_values_fall_back_to_the_normal_approximation() -> (
    None
):
    # Latencies rounded to whole milliseconds: hundreds of small tie groups, far too many
    # ways to spread 300 values over them to count.
    draw = random.Random(23)
    x = [float(round(draw.gauss(205.0, 40.0))) for _ in range(300)]
    y = [float(round(draw.gauss(200.0, 40.0))) for _ in range(700)]
    assert len(set(x + y)) < len(x + y)
    result = mann_whitney_greater(x, y)
    assert not result.exact
    assert result.p_value == pytest.approx(_scipy_asymptotic_p(x, y), rel=REL)


tied_sample = st.lists(st.integers(min_value=0, max_value=3).map(float), min_size=1, max_size=9)


@settings(max_examples=100, deadline=None)
@given(tied_sample, tied_sample)
def test_exact_tied_p_values_of_both_directions_overlap_by_the_mass_at_u(
    x: list[float], y: list[float]
) -> None:
    forward = mann_whitney_greater(x, y)
    backward = mann_whitney_greater(y, x)
    assert forward.exact
    assert backward.exact
    assert forward.p_value + backward.p_value == pytest.approx(
        1.0 + float(_null_by_tie_groups(x, y)[1]), abs=1e-12
    )


# Small integers make ties common; floats cover the rest.
values = st.one_of(
    st.integers(min_value=0, max_value=4).map(float),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
sample = st.lists(values, min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(sample, sample)
def test_u_of_both_directions_adds_up_to_the_number_of_pairs(
    x: list[float], y: list[float]
) -> None:
    assert mann_whitney_greater(x, y).u + mann_whitney_greater(y, x).u == len(x) * len(y)


@settings(max_examples=100, deadline=None)
@given(sample, sample)
def test_u_counts_greater_pairs_plus_half_the_ties(x: list[float], y: list[float]) -> None:
    greater = sum(a > b for a in x for b in y)
    tied = sum(a == b for a in x for b in y)
    assert mann_whitney_greater(x, y).u == greater + tied / 2


@settings(max_examples=100, deadline=None)
@given(sample, sample)
def test_p_value_is_a_probability(x: list[float], y: list[float]) -> None:
    result = mann_whitney_greater(x, y)
    assert 0.0 <= result.p_value <= 1.0
    assert math.isfinite(result.z)


@settings(max_examples=100, deadline=None)
@given(sample, sample)
def test_shifting_x_far_above_y_never_increases_p(x: list[float], y: list[float]) -> None:
    shift = max(y) - min(x) + 1.0
    before = mann_whitney_greater(x, y)
    after = mann_whitney_greater([v + shift for v in x], y)
    assert after.u == len(x) * len(y)
    assert after.p_value <= before.p_value


def _rejection_rate(draw: random.Random, sample_size: int, integer_counts: bool) -> float:
    trials = 2000
    rejected = 0
    for _ in range(trials):
        if integer_counts:
            x = [
                float(draw.random() < 0.1) + float(draw.random() < 0.1) for _ in range(sample_size)
            ]
            y = [
                float(draw.random() < 0.1) + float(draw.random() < 0.1) for _ in range(sample_size)
            ]
        else:
            x = [draw.gauss(100.0, 15.0) for _ in range(sample_size)]
            y = [draw.gauss(100.0, 15.0) for _ in range(sample_size)]
        rejected += mann_whitney_greater(x, y).p_value < 0.05
    return rejected / trials


def test_false_alarm_rate_is_nominal_when_nothing_changed() -> None:
    rate = _rejection_rate(random.Random(20240501), sample_size=40, integer_counts=False)
    assert 0.03 <= rate <= 0.07


def test_false_alarm_rate_is_nominal_for_small_exact_samples() -> None:
    rate = _rejection_rate(random.Random(7), sample_size=12, integer_counts=False)
    assert 0.03 <= rate <= 0.07


def test_false_alarm_rate_stays_below_alpha_for_heavily_tied_error_counts() -> None:
    rate = _rejection_rate(random.Random(11), sample_size=40, integer_counts=True)
    assert rate <= 0.07


def test_detects_a_real_slowdown() -> None:
    draw = random.Random(3)
    baseline = [draw.gauss(100.0, 15.0) for _ in range(200)]
    canary = [draw.gauss(110.0, 15.0) for _ in range(200)]
    assert mann_whitney_greater(canary, baseline).p_value < 1e-6
    assert mann_whitney_greater(baseline, canary).p_value > 0.99


@pytest.mark.parametrize(
    ("x", "y"),
    [([], [1.0]), ([1.0], []), ([], [])],
)
def test_empty_sample_is_refused(x: list[float], y: list[float]) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        mann_whitney_greater(x, y)


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        mann_whitney_greater([1.0, math.nan], [2.0])


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (5, 7), (300, 3000)])
def test_all_values_equal_means_nothing_to_see(n1: int, n2: int) -> None:
    # Every split has the same U, so every split is as extreme as the observed one.
    assert mann_whitney_greater([3.0] * n1, [3.0] * n2) == MannWhitney(
        u=n1 * n2 / 2, z=0.0, p_value=1.0, exact=True
    )


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (5, 7), (300, 3000)])
def test_all_values_equal_gives_one_from_the_normal_approximation_too(
    n1: int, n2: int, no_exact_ties: None
) -> None:
    # SciPy's asymptotic method also gives 1.0 here (z = -0.5 / 0 = -inf).
    assert mann_whitney_greater([3.0] * n1, [3.0] * n2) == MannWhitney(
        u=n1 * n2 / 2, z=0.0, p_value=1.0, exact=False
    )


def test_normal_sf_known_values() -> None:
    # scipy.stats.norm.sf from SciPy 1.17.1.
    assert normal_sf(0.0) == 0.5
    assert normal_sf(1.96) == pytest.approx(0.024997895148220435, rel=REL)
    assert normal_sf(-3.0) == pytest.approx(0.9986501019683699, rel=REL)
    assert normal_sf(10.0) == pytest.approx(7.61985302416047e-24, rel=REL)


@pytest.mark.parametrize(
    ("look", "spent"),
    [(1, 0.05 / 2), (2, 0.05 / 6), (3, 0.05 / 12), (10, 0.05 / 110)],
)
def test_alpha_for_look_spends_alpha_over_k_times_k_plus_one(look: int, spent: float) -> None:
    assert alpha_for_look(0.05, look) == pytest.approx(spent, rel=1e-15)


def test_alpha_for_look_partial_sums_approach_alpha_from_below() -> None:
    partial = math.fsum(alpha_for_look(0.05, k) for k in range(1, 1001))
    assert partial == pytest.approx(0.05 * 1000 / 1001, rel=1e-12)
    assert partial < 0.05


def test_alpha_for_look_is_front_loaded() -> None:
    spent = [alpha_for_look(0.1, k) for k in range(1, 50)]
    assert spent == sorted(spent, reverse=True)


@pytest.mark.parametrize("look", [0, -1])
def test_alpha_for_look_refuses_looks_before_the_first(look: int) -> None:
    with pytest.raises(ValueError, match="look"):
        alpha_for_look(0.05, look)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.05, 1.5, math.nan])
def test_alpha_for_look_refuses_alpha_outside_zero_one(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        alpha_for_look(alpha, 1)


# Counts are 0 or at least a tiny fraction (SciPy's gamma underflows to 0 for subnormal shapes).
counts = st.one_of(st.just(0.0), st.floats(1e-6, 5000.0))


@settings(max_examples=200, deadline=None)
@given(counts, counts)
def test_poisson_tail_matches_scipy(events: float, mean: float) -> None:
    """``P(X >= events)``: SciPy's gamma CDF (the same function, continuous in ``events``)."""
    got = stats.poisson_at_least(events, mean)
    if events <= 0:
        assert got == 1.0
    elif mean <= 0:
        assert got == 0.0
    else:
        assert got == pytest.approx(float(scipy.stats.gamma.cdf(mean, events)), abs=1e-9)
    whole = float(round(events))
    if whole >= 1 and mean > 0:
        expected = float(scipy.stats.poisson.sf(whole - 1, mean))
        assert stats.poisson_at_least(whole, mean) == pytest.approx(expected, abs=1e-9)
