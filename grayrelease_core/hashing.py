"""Stable bucketing of clients: the same client lands in the same bucket in every process.

``bucket = murmur3_32(f"{salt}:{identity}") % 10000`` gives 0.01% granularity. With a
normalizer of 100 and ``+ 1`` the same function is Unleash's ``normalizedHash``, so its
cross-SDK test vectors hold, which is how we know the hash is the standard one.
"""

from __future__ import annotations

import mmh3

BUCKETS = 10_000
"""Number of buckets: one per 0.01%."""


def bucket(salt: str, identity: str) -> int:
    """The client's bucket in ``range(BUCKETS)``."""
    return mmh3.hash(f"{salt}:{identity}", signed=False) % BUCKETS


def normalized_hash(identity: str, group: str, normalizer: int = 100) -> int:
    """Unleash's normalized hash: ``murmur3_32(f"{group}:{identity}") % normalizer + 1``."""
    return mmh3.hash(f"{group}:{identity}", signed=False) % normalizer + 1


def threshold(percentage: float) -> int:
    """Buckets below this number are in the gray set for ``percentage`` (0-100)."""
    return round(percentage * (BUCKETS // 100))
