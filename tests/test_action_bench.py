"""A smoke test of ``benchmarks/action_bench.py``: it runs end to end and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .databases import POSTGRES_URL, require

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "action_bench.py"


@pytest.mark.parametrize("layout", ["joined", "claimed"])
def test_action_bench_prints_complete_and_rollback_beside_the_baseline(layout: str) -> None:
    require("postgresql")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--rounds", "2", "--database-url", POSTGRES_URL, "--layout", layout),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = done.stdout
    assert f"({layout})" in out, out
    assert re.search(r"pause/resume \(baseline\)\s+[\d.]+ ms\s+1\.00x baseline", out), out
    for action in ("complete", "rollback"):
        assert re.search(rf"{action}\s+[\d.]+ ms\s+[\d.]+x baseline", out), out
