"""The bucketing function: standard murmur3 (Unleash's vectors) and its properties."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grayrelease_core import Client
from grayrelease_core.hashing import BUCKETS, bucket, normalized_hash, threshold
from grayrelease_core.strategy import hashed_matcher

identities = st.text(min_size=1, max_size=40)


@pytest.mark.parametrize(
    ("identity", "group", "expected"),
    [("123", "gr1", 73), ("999", "groupX", 25)],
)
def test_normalized_hash_reproduces_unleash_cross_sdk_vectors(
    identity: str, group: str, expected: int
) -> None:
    assert normalized_hash(identity, group, 100) == expected


def test_bucket_is_the_same_hash_with_ten_thousand_buckets() -> None:
    # normalized_hash(i, g, 100) - 1 == bucket(g, i) % 100 because 100 divides 10000.
    for identity in ("123", "999", "instance-7", "用户-42"):
        for group in ("gr1", "groupX", "plan-a"):
            assert bucket(group, identity) % 100 == normalized_hash(identity, group) - 1


@given(salt=identities, identity=identities)
def test_bucket_is_in_range_and_deterministic(salt: str, identity: str) -> None:
    first = bucket(salt, identity)
    assert 0 <= first < BUCKETS
    assert bucket(salt, identity) == first


@given(
    identity=identities,
    low=st.integers(min_value=0, max_value=10_000),
    high=st.integers(min_value=0, max_value=10_000),
)
def test_raising_the_percentage_never_drops_a_client(identity: str, low: int, high: int) -> None:
    low, high = sorted((low, high))
    client = Client(identity)
    before = hashed_matcher(low / 100, "salt-1", "instanceId")(client)
    after = hashed_matcher(high / 100, "salt-1", "instanceId")(client)
    assert after or not before


@given(identity=identities, percentage=st.integers(min_value=0, max_value=10_000))
def test_same_client_same_answer(identity: str, percentage: int) -> None:
    matcher = hashed_matcher(percentage / 100, "plan-x", "instanceId")
    client = Client(identity)
    assert matcher(client) == matcher(Client(identity, "10.0.0.1", user_id="someone"))


def test_every_process_puts_a_client_in_the_same_bucket() -> None:
    # Other processes (with other hash seeds) must agree, or a client would flip between hosts.
    ids = [f"instance-{n}" for n in range(200)] + ["用户-7", "pod/ä"]
    script = (
        "import json, sys; from grayrelease_core.hashing import bucket; "
        "print(json.dumps([bucket('plan-x', i) for i in json.loads(sys.argv[1])]))"
    )
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(ids)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=60,
        )
        assert json.loads(done.stdout) == [bucket("plan-x", i) for i in ids]


@pytest.mark.parametrize("percentage", [0.5, 10, 33.33, 50, 99])
def test_hit_rate_over_100k_ids_is_within_three_standard_deviations(percentage: float) -> None:
    n = 100_000
    matcher = hashed_matcher(percentage, "rate-check", "instanceId")
    hits = sum(matcher(Client(f"instance-{i}")) for i in range(n))
    p = percentage / 100
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) <= 3 * sigma, (hits, n * p, sigma)


def test_threshold_has_hundredth_of_a_percent_granularity() -> None:
    assert threshold(0.01) == 1
    assert threshold(10) == 1000
    assert threshold(100) == BUCKETS


def test_edges_select_nobody_and_everybody() -> None:
    clients = [Client(f"i-{n}") for n in range(500)]
    assert not any(hashed_matcher(0, "s", "instanceId")(c) for c in clients)
    assert all(hashed_matcher(100, "s", "instanceId")(c) for c in clients)


def test_user_stickiness_needs_a_user() -> None:
    everyone = hashed_matcher(100, "s", "userId")
    assert everyone(Client("i-1", user_id="u-1"))
    assert not everyone(Client("i-1"))
    assert not hashed_matcher(99.99, "s", "userId")(Client("i-1"))


def test_stickiness_picks_the_hashed_identity() -> None:
    by_ip = hashed_matcher(50, "s", "instanceIp")
    same_ip = [Client(f"i-{n}", "10.1.2.3") for n in range(50)]
    assert len({by_ip(c) for c in same_ip}) == 1
    by_user = hashed_matcher(50, "s", "userId")
    same_user = [Client(f"i-{n}", user_id="u-7") for n in range(50)]
    assert len({by_user(c) for c in same_user}) == 1
