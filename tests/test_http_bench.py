"""A smoke test of ``benchmarks/http_bench.py``: it runs end to end and prints its figures.

Short rounds with the Python load generator, so CI needs no wrk. Never a timed assertion: the
rates of a shared CI machine say nothing; that the script measures, checks and stops does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "http_bench.py"


def test_http_bench_prints_both_rates_and_the_ratio() -> None:
    command = [
        sys.executable,
        str(SCRIPT),
        *("--generator", "python", "--duration", "1", "--rounds", "1"),
        *("--connections", "2", "--threads", "2", "--load-workers", "1"),
        *("--instances", "500", "--sample", "2000"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    output = done.stdout
    assert done.returncode == 0, f"{output}\n{done.stderr}"
    assert "load generator: Python" in output
    rates = re.search(r"median requests/second: bare ([\d.]+), config/value ([\d.]+)", output)
    assert rates is not None, output
    assert float(rates.group(1)) > 0
    assert float(rates.group(2)) > 0
    assert re.search(r"ratio config/bare: [\d.]+ {2}target >= 0\.8", output), output
    assert "responses: non-2xx 0, connection errors 0" in output
    assert "SQL statements run inside requests during the rounds: 0" in output
    assert "grayrelease: stopped" in output  # the server got SIGTERM and shut down cleanly
