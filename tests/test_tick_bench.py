"""A smoke test of ``benchmarks/tick_bench.py``: it runs end to end and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "tick_bench.py"


def test_tick_bench_prints_the_baseline_and_both_ticks() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--plans", "30", "--samples", "10", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = done.stdout
    assert "seeded 30 ACTIVE canary plans" in out
    assert re.search(r"store\.live_plans\(\) \(baseline\)\s+[\d.]+ ms", out)
    assert re.search(r"tick, nothing due\s+[\d.]+ ms\s+x\s*[\d.]+ baseline", out)
    busy = re.search(r"every plan analyzed and stepped\s+([\d.]+) ms.*\((\d+) us per plan\)", out)
    assert busy is not None
    assert float(busy.group(1)) > 0
