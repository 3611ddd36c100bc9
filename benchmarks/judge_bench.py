"""The judge on simulated canaries: issue 17's table of false rollbacks and detections.

Run: ``make bench-judge`` (or ``.venv/bin/python benchmarks/judge_bench.py [--canaries N]
[--seed N] [--only NAME]``).

Every row runs ``--canaries`` CANARY plans through the public API (``resolve``,
``push_metrics``, ``tick`` on a manual clock; see tests/judge_sim.py for the model) and
reports, with Wilson 95% intervals:
- healthy scenarios: the share rolled back (the goal: the upper end under 5%);
- regressions: the share rolled back before 50% exposure (the goal: over 95% for doubled
  error rates at 20 requests a minute per instance and above);
- every row: steps taken without a passed analysis in the stage (the goal: none), and for
  "nothing reported", that no plan moved at all.
Seeded: the same ``--seed`` prints the same table. Exit status 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.judge_sim import HEALTHY, MISSING, REGRESSIONS, Row, measure, table, wilson

GOAL_DETECTED = ("doubled errors, 20 requests a minute", "doubled errors, 200 requests a minute")


def missed(row: Row) -> list[str]:
    """The goals this row misses."""
    problems = []
    if row.steps_without_pass:
        problems.append(f"{row.scenario.name}: {row.steps_without_pass} steps without a pass")
    if row.scenario.healthy and wilson(row.rolled_back, row.runs)[1] >= 0.05:
        problems.append(f"{row.scenario.name}: false rollbacks may exceed 5%")
    if row.scenario.name in GOAL_DETECTED and row.early / row.runs <= 0.95:
        problems.append(f"{row.scenario.name}: {row.early / row.runs:.1%} caught before 50%")
    if not row.scenario.push and row.reached_top:
        problems.append(f"{row.scenario.name}: a plan moved without data")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--canaries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--only", help="run the scenarios whose name contains this")
    args = parser.parse_args()
    scenarios = [
        s for s in (*HEALTHY, *REGRESSIONS, *MISSING) if not args.only or args.only in s.name
    ]
    started = time.perf_counter()
    rows = []
    for scenario in scenarios:
        rows.append(measure(scenario, args.canaries, args.seed))
        print("  " + " | ".join(rows[-1].cells()), file=sys.stderr, flush=True)
    table(rows)
    problems = [problem for row in rows for problem in missed(row)]
    print(
        f"\n{len(rows)} scenarios x {args.canaries} canaries, seed {args.seed}, "
        f"{time.perf_counter() - started:.0f} s"
    )
    for problem in problems:
        print(f"MISSED {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
