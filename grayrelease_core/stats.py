"""Statistics for the canary judge: a one-sided Mann-Whitney U test and an alpha-spending rule.

Pure Python (stdlib ``math`` only) so the core needs no SciPy. The test answers "do the
canary's values (latencies, error counts) tend to be larger than the baseline's?" without
assuming any distribution, and matches ``scipy.stats.mannwhitneyu(x, y, alternative="greater")``
with ``method="exact"`` for small tie-free samples and ``method="asymptotic"`` otherwise.
Bad input (an empty sample, a NaN) is a programming error here, so it raises ``ValueError``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain, repeat
from typing import NamedTuple

EXACT_MAX_PAIRS = 400
"""Largest ``n1 * n2`` for the exact null distribution.

Up to here the table costs under a millisecond once per pair of sizes (then it is cached),
and these small samples are where the normal approximation is least accurate. SciPy's
``method="auto"`` is more timid (exact only when a sample has at most 8 values).
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

    Exact when there are no ties and ``len(x) * len(y) <= EXACT_MAX_PAIRS``; otherwise the
    normal approximation with the tie-corrected variance and a 0.5 continuity correction.
    When every value is equal there is nothing to rank, and ``p_value`` is ``1.0``.
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
    group_sizes = Counter(chain(x, y)).values()
    has_ties = len(group_sizes) < n

    if not has_ties and n1 * n2 <= EXACT_MAX_PAIRS:
        return MannWhitney(u, 0.0, _exact_sf(doubled_u // 2, n1, n2), True)

    # Integer arithmetic until the last division, so "all values equal" gives a variance of
    # exactly zero, not a rounding residue that would turn -0.5 / sigma into a huge z.
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
