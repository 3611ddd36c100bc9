"""Statistics for the canary judge: a one-sided Mann-Whitney U test and an alpha-spending rule.

Pure Python (stdlib ``math`` only) so the core needs no SciPy. The test answers "do the
canary's values (latencies, error counts) tend to be larger than the baseline's?" without
assuming any distribution, and matches ``scipy.stats.mannwhitneyu(x, y, alternative="greater")``
with ``method="exact"`` for small tie-free samples, with the exact permutation p-value of
``method=scipy.stats.PermutationMethod(n_resamples=numpy.inf)`` for tied samples whose null
distribution is cheap to count, and with ``method="asymptotic"`` otherwise.
Bad input (an empty sample, a NaN) is a programming error here, so it raises ``ValueError``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Collection, Sequence
from functools import lru_cache
from itertools import accumulate, chain, repeat
from operator import mul
from typing import NamedTuple

EXACT_MAX_PAIRS = 400
"""Largest ``n1 * n2`` for the exact null distribution.

Up to here the table costs under a millisecond once per pair of sizes (then it is cached),
and these small samples are where the normal approximation is least accurate. SciPy's
``method="auto"`` is more timid (exact only when a sample has at most 8 values).
"""

EXACT_MAX_SPLITS = 10**7
"""Most ways the smaller sample may be spread over the tie groups for the exact tied test.

A bound known before any counting (see :func:`_tie_splits`): beyond it the counting almost
never fits in :data:`EXACT_MAX_WORK`, so it is not started. Latencies rounded to whole
milliseconds have hundreds of groups and land far beyond; error counts of a few values do not.
"""

EXACT_MAX_WORK = 10_000
"""Most state updates the exact tied test may spend before it gives up for the normal one.

A few milliseconds of pure Python: the judge runs up to thousands of tests per tick. Samples
with few distinct values (error counts, a lone nonzero error rate) need far less: 3 gray
against 97 baseline instances a handful, 20 against 1980 with eight values a few thousand.
An update of counts wider than 512 bits (``C(n1 + n2, min(n1, n2))`` is, from about 60
against 2000) costs one unit per started 512 bits.
"""


class MannWhitney(NamedTuple):
    """Result of :func:`mann_whitney_greater`."""

    u: float
    """U of the first sample: pairs ``(x, y)`` with ``x > y``, plus half of the tied pairs."""
    z: float
    """Continuity-corrected z score of the normal approximation; ``0.0`` when ``exact``."""
    p_value: float
    """One-sided p-value for "x tends to be larger than y"."""
    exact: bool
    """Whether ``p_value`` comes from the exact null distribution rather than the normal one."""


def normal_sf(z: float) -> float:
    """``P(Z > z)`` for a standard normal; ``erfc`` keeps precision far in the upper tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """One-sided Mann-Whitney U test of H1 "values of ``x`` tend to be larger than ``y``'s".

    The p-value is exact (the share of all ``C(n1 + n2, n1)`` splits of the pooled values
    whose U is at least the observed one) when

    - there are no ties and ``len(x) * len(y) <= EXACT_MAX_PAIRS``, or
    - there are ties, the smaller sample can be spread over the tie groups in at most
      ``EXACT_MAX_SPLITS`` ways, and counting the splits takes at most ``EXACT_MAX_WORK``
      state updates.

    Otherwise it is the normal approximation with the tie-corrected variance and a 0.5
    continuity correction, which is good when both samples are large and the values mostly
    distinct, but far too thin-tailed when nearly everything is tied: 3 canary instances with
    error rates ``(0, 0, e)`` against 97 baseline instances with one ``e`` among zeros give
    p = 5e-5 by the normal curve, while the share of splits at least as extreme is 6%.
    When every value is equal, every split is as extreme and ``p_value`` is exactly ``1.0``.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError(f"both samples must be non-empty (got {n1} and {n2} values)")
    if any(map(math.isnan, x)) or any(map(math.isnan, y)):
        raise ValueError("samples must not contain NaN: it has no rank")

    # Counting the smaller sample against the larger one, sorted, gives U without building a
    # rank array; ``map`` over ``bisect`` keeps the O(n log n) work in C, which matters at
    # ~1000 calls per tick. 2U stays an integer: each tied pair is counted once, i.e. as a half.
    if n1 <= n2:
        doubled_u = _doubled_pairs_greater(x, sorted(y))
    else:
        doubled_u = 2 * n1 * n2 - _doubled_pairs_greater(y, sorted(x))
    u = doubled_u / 2

    n = n1 + n2
    pooled = Counter(chain(x, y))
    group_sizes = pooled.values()
    has_ties = len(group_sizes) < n

    if not has_ties and n1 * n2 <= EXACT_MAX_PAIRS:
        return MannWhitney(u, 0.0, _exact_sf(doubled_u // 2, n1, n2), True)
    if has_ties:
        p_value = _exact_tied_sf(x, y, pooled)
        if p_value is not None:
            return MannWhitney(u, 0.0, p_value, True)

    # Integer arithmetic until the last division, so "all values equal" (counted exactly
    # above, unless the limits are set to zero) gives a variance of exactly zero, not a
    # rounding residue that would turn -0.5 / sigma into a huge z.
    tie_term = sum(map(pow, group_sizes, repeat(3))) - n if has_ties else 0
    variance_numerator = n1 * n2 * ((n + 1) * n * (n - 1) - tie_term)
    if variance_numerator <= 0:
        return MannWhitney(u, 0.0, 1.0, False)
    sigma = math.sqrt(variance_numerator / (12 * n * (n - 1)))
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    return MannWhitney(u, z, normal_sf(z), False)


def _doubled_pairs_greater(small: Sequence[float], large_sorted: list[float]) -> int:
    """Twice the number of pairs ``(s, t)`` with ``s > t``, plus the pairs with ``s == t``."""
    count = len(small)
    below = sum(map(bisect_left, repeat(large_sorted, count), small))
    not_above = sum(map(bisect_right, repeat(large_sorted, count), small))
    return below + not_above


def _exact_sf(u: int, n1: int, n2: int) -> float:
    """``P(U >= u)`` under the null hypothesis, for samples of sizes ``n1`` and ``n2``."""
    tail = _upper_tail_counts(min(n1, n2), max(n1, n2))
    if u <= 0:
        return 1.0
    if u >= len(tail):
        return 0.0
    # Python's int / int is correctly rounded, so the p-value carries no accumulated error.
    return tail[u] / tail[0]


@lru_cache(maxsize=256)
def _upper_tail_counts(m: int, n: int) -> tuple[int, ...]:
    """``counts[k]`` = number of arrangements with ``U >= k``; ``counts[0] = C(m + n, m)``.

    The frequencies of U are the coefficients of the Gaussian binomial ``[m + n choose m]_q
    = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i)``. Every step reads only lower coefficients,
    so working modulo ``q^(mn+1)`` is exact, and exact integers never overflow or round.
    """
    top = m * n
    coefficients = [0] * (top + 1)
    coefficients[0] = 1
    for i in range(1, m + 1):
        grow = n + i
        for k in range(top, grow - 1, -1):  # times (1 - q^grow)
            coefficients[k] -= coefficients[k - grow]
        for k in range(i, top + 1):  # divided by (1 - q^i): times 1 + q^i + q^2i + ...
            coefficients[k] += coefficients[k - i]
    counts: list[int] = []
    running = 0
    for frequency in reversed(coefficients):
        running += frequency
        counts.append(running)
    counts.reverse()
    return tuple(counts)


def _exact_tied_sf(x: Sequence[float], y: Sequence[float], pooled: Counter[float]) -> float | None:
    """``P(U >= u)`` over all splits of the pooled values, or ``None`` when too costly to count.

    The splits are counted for the smaller sample, since the work grows with its size: "``x``
    tends to be larger than ``y``" is "``-y`` tends to be larger than ``-x``", so when ``y`` is
    the smaller sample its values are counted in descending order.
    """
    if len(x) <= len(y):
        chosen, order = Counter(x), sorted(pooled)
    else:
        chosen, order = Counter(y), sorted(pooled, reverse=True)
    m = chosen.total()
    if _tie_splits(pooled.values(), m, EXACT_MAX_SPLITS) > EXACT_MAX_SPLITS:
        return None
    splits = math.comb(len(x) + len(y), m)
    # The counts are integers up to ``splits``: adding 2000-bit numbers costs several times
    # what adding small ones does, so each state costs one unit per started 512 bits.
    max_states = EXACT_MAX_WORK // (splits.bit_length() // 512 + 1)
    sizes = [pooled[value] for value in order]
    picked = [chosen[value] for value in order]
    count = _splits_at_least_observed(sizes, picked, max_states)
    if count is None:
        return None
    return count / splits


def _tie_splits(sizes: Collection[int], m: int, limit: int) -> int:
    """An upper bound on the ways to spread ``m`` values over tie groups of ``sizes``.

    The smaller of two cheap bounds: the counts in all groups but the largest, each from 0 to
    ``min(size, m)``, determine the split, and there are ``C(m + G - 1, G - 1)`` ways to write
    ``m`` as a sum of ``G`` counts. Each stops growing once past ``limit``.
    """
    by_count = 1
    largest = max(sizes)
    for size in sizes:
        if size == largest:
            largest = -1  # skip it once
            continue
        by_count *= min(size, m) + 1
        if by_count > limit:
            break
    by_sum = 1
    for groups in range(1, len(sizes)):
        by_sum = by_sum * (m + groups) // groups  # C(m + groups, groups), exactly
        if by_sum > limit:
            break
    return min(by_count, by_sum)


def _splits_at_least_observed(sizes: list[int], picked: list[int], max_work: int) -> int | None:
    """Ways to pick ``sum(picked)`` of the pooled values with a rank sum at least the observed.

    ``sizes`` are the tie groups in ascending order of value, ``picked`` how many of each
    belong to the sample. With doubled midranks every rank is an integer, and the count of
    picks is the coefficient sum of ``prod_g sum_k C(t_g, k) x^k q^(k r_g)`` over ``x^m`` and
    ``q^s`` with ``s`` at least the observed doubled rank sum. It is built group by group as
    a map (picked so far -> partial sum -> ways), with Python integers, so nothing rounds.
    A partial pick whose every completion lands on the same side of the observed sum is
    settled at once: it adds ``C(remaining, still to pick)`` ways or none. Far in a tail that
    settles most of them; at the last group it settles all. Gives ``None`` once more than
    ``max_work`` states have been visited.
    """
    ends = list(accumulate(sizes))
    n, m = ends[-1], sum(picked)
    starts = [end - size for end, size in zip(ends, sizes, strict=True)]
    ranks = [start + end + 1 for start, end in zip(starts, ends, strict=True)]
    observed = sum(map(mul, picked, ranks))
    before: list[int] = [0, *accumulate(map(mul, sizes, ranks))]

    def lowest(position: int) -> int:
        """Doubled rank sum of the first ``position`` values in ascending order."""
        group = bisect_right(ends, position)
        if group == len(ends):
            return before[group]
        return before[group] + (position - starts[group]) * ranks[group]

    layers: dict[int, dict[int, int]] = {0: {0: 1}}
    settled = work = 0
    for start, size, rank in zip(starts, sizes, ranks, strict=True):
        remaining = n - start
        grown: dict[int, dict[int, int]] = {}
        # C(size, taken) for every count that may be taken; one math.comb per state would
        # cost more than the rest of the count when the groups are large.
        binomials = [1]
        for taken in range(min(size, m)):
            binomials.append(binomials[-1] * (size - taken) // (taken + 1))
        for k, layer in layers.items():
            need = m - k
            if need > remaining:
                continue
            # Completions add at least the next ``need`` ranks and at most the top ``need``.
            sure = observed - (lowest(start + need) - lowest(start))
            hopeless = observed - (before[-1] - lowest(n - need))
            open_sums: dict[int, int] = {}
            sure_ways = 0
            for partial, ways in layer.items():
                if partial >= sure:
                    sure_ways += ways
                elif partial >= hopeless:
                    open_sums[partial] = ways
            if sure_ways:
                settled += sure_ways * math.comb(remaining, need)
            top = min(size, need)
            work += len(layer) + len(open_sums) * (top + 1)
            if work > max_work:
                return None
            if not open_sums:
                continue
            for taken in range(top + 1):
                factor, shift = binomials[taken], taken * rank
                target = grown.setdefault(k + taken, {})
                for partial, ways in open_sums.items():
                    key = partial + shift
                    target[key] = target.get(key, 0) + ways * factor
        layers = grown
    return settled


def alpha_for_look(alpha: float, look: int) -> float:
    """Significance level to spend at the ``look``-th analysis (1-based): ``alpha / (k(k+1))``.

    The canary is judged again every tick on accumulating data, and testing each look at
    ``alpha`` would make a false alarm near certain. Since ``1/(k(k+1)) = 1/k - 1/(k+1)``
    telescopes, the levels sum to exactly ``alpha`` over infinitely many looks, so by the
    union bound the chance of any false alarm stays at most ``alpha`` however long the judge
    runs, with no need to fix the number of looks in advance. The shape is front-loaded:
    half of ``alpha`` goes to the first look, when few users are exposed and an early stop
    is most valuable, and later looks, which have more data, need less of it.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if look < 1:
        raise ValueError(f"look is 1-based and must be >= 1, got {look!r}")
    return alpha / (look * (look + 1))


def poisson_at_least(events: float, mean: float) -> float:
    """``P(X >= events)`` for ``X`` Poisson with ``mean``: how surprising so many events are.

    For whole ``events`` it is the regularized lower incomplete gamma ``P(events, mean)``;
    a fractional count (Prometheus' ``increase()`` extrapolates) uses the same continuous
    form. Series below ``events + 1``, Lentz's continued fraction above (Numerical Recipes,
    ``gammp``): within 1e-9 of SciPy up to thousands of events.
    """
    if events <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if not (math.isfinite(events) and math.isfinite(mean)):
        raise ValueError(f"events and mean must be finite, got {events!r}, {mean!r}")
    log_prefix = events * math.log(mean) - mean - math.lgamma(events)
    if mean < events + 1.0:
        term = total = 1.0 / events
        shape = events
        for _ in range(10_000):
            shape += 1.0
            term *= mean / shape
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return min(1.0, total * math.exp(log_prefix))
    tiny = 1e-300
    b = mean + 1.0 - events
    c = 1.0 / tiny
    d = 1.0 / b
    fraction = d
    for i in range(1, 10_000):
        a = -i * (i - events)
        b += 2.0
        d = a * d + b
        d = tiny if abs(d) < tiny else d
        c = b + a / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        fraction *= step
        if abs(step - 1.0) < 1e-15:
            break
    return max(0.0, 1.0 - math.exp(log_prefix) * fraction)
