"""Microseconds per ``resolve()``, beside the GrowthBook Python SDK making the same decision.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/resolve_bench.py [--instances N]``).

(a) a key under an ACTIVE 10% PERCENTAGE plan, (b) a key with no plan, and (c) GrowthBook
evaluating a feature with a 10% force rule (coverage 0.1, hashed on the instance id) for the
same clients: its local, in-process rollout evaluation, the closest peer to our read path.
Each figure is the median over several rounds of the mean time per call in a round; the ratio
of (a) to (c) survives a noisy machine better than either absolute number.
Targets on a 2-core machine: (a) <= 1.0 us and <= (c) / 4; (b) <= 0.5 us.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from growthbook import GrowthBook

from grayrelease_core import Client, ConfigRef, GrayRelease

APP, ENV, GROUP = "order-service", "prod", "default"
GRAY_KEY = ConfigRef(APP, ENV, GROUP, "feature.newPayment.enabled")
PLAIN_KEY = ConfigRef(APP, ENV, GROUP, "feature.other.enabled")


def per_call_us(call: Callable[[int], object], count: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean microseconds per ``call(i)`` for i in range(count)."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(count):
            call(i)
        samples.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    clients = [
        Client(f"instance-{i:06d}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        for i in range(args.instances)
    ]
    attributes = [{"id": client.instance_id} for client in clients]

    with tempfile.TemporaryDirectory() as folder:
        gr = GrayRelease.from_settings(
            {"database_url": f"sqlite:///{Path(folder) / 'bench.db'}", "background_sync": False}
        )
        gr.backend.publish(GRAY_KEY, "false", actor="bench")
        gr.backend.publish(PLAIN_KEY, "false", actor="bench")
        plan = gr.create_plan(
            {
                "planName": "bench",
                "appName": APP,
                "environment": ENV,
                "configKeys": [GRAY_KEY.config_key],
                "grayStrategy": "PERCENTAGE",
                "grayRules": {"percentage": 10},
                "grayValues": {GRAY_KEY.config_key: "true"},
            },
            actor="bench",
        )
        gr.start(plan.id, actor="bench")
        resolve = gr.resolve
        hits = sum(resolve(GRAY_KEY, client).gray for client in clients)

        gray_us = per_call_us(lambda i: resolve(GRAY_KEY, clients[i]), args.instances, args.rounds)
        plain_us = per_call_us(
            lambda i: resolve(PLAIN_KEY, clients[i]), args.instances, args.rounds
        )
        gr.close()

    gb = GrowthBook(
        features={
            GRAY_KEY.config_key: {
                "defaultValue": "false",
                "rules": [{"force": "true", "coverage": 0.1, "hashAttribute": "id"}],
            }
        }
    )

    def growthbook_decision(i: int) -> object:
        gb.set_attributes(attributes[i])
        return gb.get_feature_value(GRAY_KEY.config_key, "false")

    gb_hits = sum(growthbook_decision(i) == "true" for i in range(args.instances))
    gb_us = per_call_us(growthbook_decision, args.instances, args.rounds)
    loop_us = per_call_us(lambda i: clients[i], args.instances, args.rounds)

    print(f"instances: {args.instances}, rounds: {args.rounds} (median of per-round means)")
    print(f"{'case':52} {'us/call':>9}  target")
    print(f"{'(a) grayrelease resolve, key under 10% PERCENTAGE':52} {gray_us:9.3f}  <= 1.0")
    print(f"{'(b) grayrelease resolve, key with no plan':52} {plain_us:9.3f}  <= 0.5")
    print(f"{'(c) GrowthBook set_attributes + get_feature_value':52} {gb_us:9.3f}")
    print(f"{'    loop and lambda overhead (in every figure above)':52} {loop_us:9.3f}")
    print(f"ratio (a)/(c): {gray_us / gb_us:.3f}  target <= 0.25")
    print(
        f"gray share: grayrelease {hits / args.instances:.2%}, "
        f"GrowthBook {gb_hits / args.instances:.2%}"
    )


if __name__ == "__main__":
    main()
