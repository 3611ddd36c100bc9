"""A seeded slice of the judge simulation (tests/judge_sim.py): issue 17's goals, checked on
a few canaries per scenario through the public API. ``make bench-judge`` runs the full table.

The bounds are loose enough for 20 runs and tight enough that the judge issue 17 found would
fail them: it rolled back 22% of healthy canaries in a fleet-wide incident, caught 80.5% of
doubled error rates before 50% exposure, and stepped every canary without data.
"""

from __future__ import annotations

from .judge_sim import MISSING, Scenario, measure

SEED = 17


def test_invariant_no_plan_moves_without_data() -> None:
    (nothing,) = MISSING
    row = measure(nothing, 5, SEED)
    assert row.rolled_back == 0
    assert row.reached_top == 0
    assert row.steps_without_pass == 0


def test_healthy_canaries_are_not_rolled_back_even_in_a_fleet_wide_incident() -> None:
    for scenario in (
        Scenario("20 requests a minute"),
        Scenario("fleet-wide incident during the steps", incident=(8, 18, 20.0)),
    ):
        row = measure(scenario, 20, SEED)
        assert row.rolled_back <= 1, (scenario.name, row)
        assert row.reached_top >= 19, (scenario.name, row)
        assert row.steps_without_pass == 0, (scenario.name, row)


def test_doubled_errors_at_20_requests_a_minute_are_caught_before_half_the_fleet() -> None:
    # 40 runs: at the 80.5% of the judge issue 17 found, 37 or more would happen 3% of the time.
    row = measure(Scenario("doubled errors, 20 requests a minute", factor=2.0), 40, SEED)
    assert row.early >= 37, row
    assert row.steps_without_pass == 0, row
