"""A simulation of canaries on real traffic shapes, driven through the public API only.

Each simulated canary is a CANARY plan (a few canary instances, then 20% steps every 5
minutes) on a fleet of instances that read the key with ``resolve`` (so the plan records who
got the gray value) and report, once a minute, their requests and errors through
``push_metrics`` (``events`` of ``total``), with the group ``resolve`` told them. The engine's
clock is a ``ManualClock``; ``tick`` runs every simulated minute. Nothing of the judge is
called directly: what is measured is what an operator's plan would do.

Kept in tests/ so ``make test`` runs a small, seeded slice of it (tests/test_judge_sim.py) and
``make bench-judge`` (benchmarks/judge_bench.py) prints the full table of issue 17's goals.
Every run is seeded: a scenario's figures replay from ``(scenario, seed)``.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs

from grayrelease_core import Client, ConfigRef, GrayRelease, ManualClock, PlanStatus

STEP_MINUTES = 5
STEP_PERCENTAGE = 20
RATE_CHECK = {"metric": "errorRate", "maxIncrease": 0.2, "measure": "rate"}
LATENCY_CHECK = {"metric": "latencyP99", "maxIncrease": 0.2, "minSamples": 5}


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


@attrs.frozen
class Scenario:
    """One traffic shape, and what the release does to the gray instances."""

    name: str
    instances: int = 100
    canaries: int = 2
    requests_per_minute: float = 20.0
    error_rate: float = 0.01
    factor: float = 1.0
    """How many times more often a gray instance fails (1: a healthy release)."""
    bad_canaries: int | None = None
    """Only the first ``bad_canaries`` gray instances are worse (``None``: all of them)."""
    traffic_spread: float = 0.0
    """Log-normal sigma of the instances' traffic (a heterogeneous fleet)."""
    error_spread: float = 0.25
    """Log-normal sigma of the instances' own error levels."""
    incident: tuple[int, int, float] | None = None
    """``(from minute, to minute, multiplier)``: a fleet-wide error incident."""
    ramp: tuple[float, float] | None = None
    """Traffic multiplier at the first and at the last minute (a load ramp)."""
    latency: bool = False
    """Judge a heavy-tailed latency (one value per instance) instead of counted errors."""
    push: bool = True
    """``False``: nobody reports anything (missing data)."""
    minutes: int = 45
    repeat: int = 1
    """Run ``repeat`` times the canaries asked for. A value check's false rollbacks are
    bounded by ``alpha`` (2.5%), and near that rate 200 runs cannot show the interval's upper
    end under 5%: it takes about 600."""

    @property
    def healthy(self) -> bool:
        return self.factor == 1.0


@attrs.frozen
class Outcome:
    """What became of one simulated canary."""

    rolled_back_at: float | None
    """The percentage it was rolled back at (``None``: not rolled back)."""
    top: float
    """The highest percentage it reached."""
    steps_without_pass: int
    """Steps taken with no passed analysis in the stage (must be zero)."""


def plan_body(app: str, scenario: Scenario, canary_ips: Sequence[str], salt: str) -> dict[str, Any]:
    check = LATENCY_CHECK if scenario.latency else RATE_CHECK
    return {
        "planName": f"sim {app}",
        "appName": app,
        "environment": "prod",
        "configKeys": ["feature"],
        "grayStrategy": "CANARY",
        "grayRules": {
            "canary": {
                "canaryInstances": list(canary_ips),
                "stepPercentage": STEP_PERCENTAGE,
                "stepInterval": STEP_MINUTES,
                # Which instances a percentage reaches follows the salt (by default the plan's
                # random id): drawn from the run's generator, so a seed replays the run.
                "salt": salt,
            }
        },
        "grayValues": {"feature": "new"},
        "autoRollback": {"checks": [check]},
    }


def run(scenario: Scenario, canaries: int, seed: int, *, batch: int = 25) -> list[Outcome]:
    """``canaries`` runs of ``scenario``, ``batch`` plans at a time in one engine."""
    rng = random.Random(f"{scenario.name}:{seed}")
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as folder:
        for first in range(0, canaries, batch):
            size = min(batch, canaries - first)
            outcomes.extend(_batch(scenario, size, rng, Path(folder) / f"sim{first}.db"))
    return outcomes


@attrs.define
class _Canary:
    plan_id: str
    ref: ConfigRef
    clients: list[Client]
    traffic: list[float]
    levels: list[float]
    done: bool = False


def _batch(scenario: Scenario, size: int, rng: random.Random, path: Path) -> list[Outcome]:
    clock = ManualClock()
    settings = {"database_url": f"sqlite:///{path}", "background_sync": False}
    canaries: list[_Canary] = []
    with GrayRelease.from_settings(settings, clock=clock, load_entrypoints=False) as gr:
        for n in range(size):
            app = f"app{n}"
            ref = ConfigRef(app, "prod", "default", "feature")
            gr.backend.publish(ref, "old", actor="ops")
            clients = [
                Client(f"{app}-i{i}", f"10.{n}.{i // 250}.{i % 250}")
                for i in range(scenario.instances)
            ]
            canary_ips = [c.instance_ip for c in clients[: scenario.canaries]]
            body = plan_body(app, scenario, canary_ips, f"{rng.getrandbits(64):016x}")
            plan = gr.create_plan(body, actor="sim")
            gr.start(plan.id, actor="sim")
            canaries.append(
                _Canary(
                    plan.id,
                    ref,
                    clients,
                    [math.exp(rng.gauss(0, scenario.traffic_spread)) for _ in clients],
                    [
                        scenario.error_rate * math.exp(rng.gauss(0, scenario.error_spread))
                        for _ in clients
                    ],
                )
            )
        tops = [0.0] * size
        for minute in range(1, scenario.minutes + 1):
            # Agents report a minute at its end (stamped then), just before the tick.
            clock.advance(timedelta(minutes=1))
            for canary in canaries:
                if canary.done:
                    continue
                samples = _minute(scenario, gr, canary, minute, rng)
                if samples:
                    gr.push_metrics(canary.plan_id, samples, actor="agent")
            gr.tick()
            for index, canary in enumerate(canaries):
                if canary.done:
                    continue
                plan = gr.get_plan(canary.plan_id)
                tops[index] = max(tops[index], plan.progress.percentage)
                if plan.status is not PlanStatus.ACTIVE or plan.progress.percentage >= 100:
                    canary.done = True
        return [_outcome(gr, canary, top) for canary, top in zip(canaries, tops, strict=True)]


def _minute(
    scenario: Scenario, gr: GrayRelease, canary: _Canary, minute: int, rng: random.Random
) -> list[dict[str, Any]]:
    """Every instance reads the key, then reports its last minute."""
    if not scenario.push:
        for client in canary.clients:
            gr.resolve(canary.ref, client)
        return []
    load = 1.0
    if scenario.ramp is not None:
        low, high = scenario.ramp
        load = low + (high - low) * (minute - 1) / max(1, scenario.minutes - 1)
    incident = 1.0
    if scenario.incident is not None and scenario.incident[0] <= minute < scenario.incident[1]:
        incident = scenario.incident[2]
    samples = []
    gray_seen = 0
    for client, traffic, level in zip(canary.clients, canary.traffic, canary.levels, strict=True):
        gray = gr.resolve(canary.ref, client).gray
        worse = gray and (scenario.bad_canaries is None or gray_seen < scenario.bad_canaries)
        gray_seen += gray
        factor = scenario.factor if worse else 1.0
        if scenario.latency:
            # A heavy tail: each minute's p99 is a Pareto draw around the instance's level.
            value = 100.0 * (level / scenario.error_rate) * factor * rng.paretovariate(3.0)
            samples.append(
                {
                    "instanceId": client.instance_id,
                    "metric": "latencyP99",
                    "value": value,
                    "gray": gray,
                }
            )
            continue
        requests = poisson(rng, scenario.requests_per_minute * traffic * load)
        rate = min(1.0, level * factor * incident)
        errors = min(requests, poisson(rng, requests * rate))
        samples.append(
            {
                "instanceId": client.instance_id,
                "metric": "errorRate",
                "events": errors,
                "total": requests,
                "gray": gray,
            }
        )
    return samples


def _outcome(gr: GrayRelease, canary: _Canary, top: float) -> Outcome:
    rows = gr.plan_logs(canary.plan_id, page_size=500).items
    rolled_at: float | None = None
    passed_in_stage = False
    steps_without_pass = 0
    percentage = 0.0
    for row in rows:
        if row.action == "ANALYSIS_PASSED":
            passed_in_stage = True
        elif row.action == "STEPPED":
            steps_without_pass += not passed_in_stage
            passed_in_stage = False
            percentage = float((row.details or {}).get("toPercentage", percentage))
        elif row.action == "AUTO_ROLLBACK":
            rolled_at = percentage
    return Outcome(rolled_at, top, steps_without_pass)


# --- the table -----------------------------------------------------------------------------

HEALTHY = (
    Scenario("heterogeneous fleet", requests_per_minute=200, traffic_spread=1.0, error_spread=0.5),
    Scenario("20 requests a minute"),
    Scenario("heavy-tailed latency", canaries=5, latency=True, repeat=3),
    Scenario("errors at 0.005%", requests_per_minute=200, error_rate=0.00005),
    Scenario("errors at 0.02%", requests_per_minute=200, error_rate=0.0002),
    Scenario(
        "3 canaries, errors at 0.005%", canaries=3, requests_per_minute=200, error_rate=0.00005
    ),
    Scenario("fleet-wide incident during the steps", incident=(8, 18, 20.0)),
    Scenario("load ramp", requests_per_minute=50, ramp=(0.2, 3.0)),
)
REGRESSIONS = (
    Scenario("doubled errors, 20 requests a minute", factor=2.0),
    Scenario("doubled errors, 200 requests a minute", factor=2.0, requests_per_minute=200),
    Scenario("doubled rare errors (0.02%)", factor=2.0, requests_per_minute=200, error_rate=0.0002),
    Scenario("1.5x errors, 20 requests a minute", factor=1.5),
    Scenario("doubled errors, 5 instances", factor=2.0, instances=5, canaries=1),
    Scenario("one bad canary (x5) of four", factor=5.0, canaries=4, bad_canaries=1),
)
MISSING = (Scenario("nothing reported", push=False),)


def wilson(successes: int, runs: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson 95% interval of a proportion."""
    if runs == 0:
        return 0.0, 1.0
    share = successes / runs
    centre = share + z * z / (2 * runs)
    spread = z * math.sqrt(share * (1 - share) / runs + z * z / (4 * runs * runs))
    scale = 1 + z * z / runs
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


@attrs.frozen
class Row:
    scenario: Scenario
    runs: int
    rolled_back: int
    early: int
    """Rolled back before 50% exposure."""
    reached_top: int
    steps_without_pass: int

    def cells(self) -> list[str]:
        def share(count: int) -> str:
            low, high = wilson(count, self.runs)
            return f"{count / self.runs:6.1%} [{low:.1%}-{high:.1%}]"

        return [
            self.scenario.name,
            str(self.runs),
            share(self.rolled_back),
            share(self.early),
            share(self.reached_top),
            str(self.steps_without_pass),
        ]


def measure(scenario: Scenario, canaries: int, seed: int) -> Row:
    outcomes = run(scenario, canaries * scenario.repeat, seed)
    return Row(
        scenario,
        len(outcomes),
        sum(o.rolled_back_at is not None for o in outcomes),
        sum(o.rolled_back_at is not None and o.rolled_back_at < 50 for o in outcomes),
        sum(o.rolled_back_at is None and o.top >= 100 for o in outcomes),
        sum(o.steps_without_pass for o in outcomes),
    )


HEADER = ["scenario", "runs", "rolled back", "before 50%", "reached 100%", "steps w/o pass"]


def table(rows: Sequence[Row], say: Callable[[str], None] = print) -> None:
    """A Markdown table of the rows."""
    say("| " + " | ".join(HEADER) + " |")
    say("|" + "---|" * len(HEADER))
    for row in rows:
        say("| " + " | ".join(row.cells()) + " |")
