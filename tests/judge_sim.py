"""A simulation of canaries on real traffic shapes, driven through the public API only.

Kept in tests/ so ``make test`` runs a small, seeded slice of it and ``make bench-judge``
(``benchmarks/judge_bench.py``) prints the full table of issue 17's goals.
"""

from __future__ import annotations

import math
import random


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: exact (Knuth's product of uniforms) up to a mean of 30, the normal
    approximation above, where it is good to a fraction of a percent."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count
