"""The canary judge's statistics: checked against SciPy, brute force and simulation."""

from __future__ import annotations

import math
import random
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
ERRORS_CANARY = [0] * 30 + [1] * 7 + [2] * 3
ERRORS_CANARY_BAD = [0] * 20 + [1] * 10 + [2] * 6 + [4] * 4
ERRORS_BASELINE = [0] * 100 + [1] * 15 + [2] * 4 + [3]
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
    x: list[float], y: list[float], u: float, p_value: float
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
    x: list[float], y: list[float], z: float
) -> None:
    assert mann_whitney_greater(x, y).z == pytest.approx(z, rel=REL)


def test_exact_distribution_is_used_up_to_the_pair_limit_and_not_beyond() -> None:
    assert len(X20) * len(Y20) == EXACT_MAX_PAIRS
    assert mann_whitney_greater(X20, Y20).exact
    assert not mann_whitney_greater(X20, Y21).exact


def test_ties_switch_small_samples_to_the_normal_approximation() -> None:
    result = mann_whitney_greater([1.0, 2.0, 3.0], [3.0, 4.0])
    assert not result.exact
    assert result.u == 0.5


def _brute_force_null(x: list[float], y: list[float]) -> tuple[float, float]:
    """``(P(U >= u), P(U = u))`` over every split of the pooled values: the null by definition."""
    pooled = x + y
    observed = sum(a > b for a in x for b in y)
    indices = range(len(pooled))
    total = at_least = equal = 0
    for chosen in combinations(indices, len(x)):
        picked = set(chosen)
        first = [pooled[i] for i in chosen]
        second = [pooled[i] for i in indices if i not in picked]
        u = sum(a > b for a in first for b in second)
        total += 1
        at_least += u >= observed
        equal += u == observed
    return at_least / total, equal / total


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
