"""Held Apollo polls on one ``grayrelease serve`` process, beside config reads.

Run: ``make bench-polls`` (or ``.venv/bin/python benchmarks/polls_bench.py [--polls N]
[--connections N] [--seconds S]``).

The server is ``grayrelease serve --load-examples`` in a process of its own (the sql
backend on a scratch SQLite file, 8 threads). The bench process is the crowd:
1. baseline: ``--connections`` keep-alive clients read ``GET /config/value`` for
   ``--seconds``, with no poll open;
2. ``--polls`` Apollo notification polls of ``demo-app``'s ``database`` namespace are opened
   and held (each on its own connection; the bench raises its own file limit, and the
   server's, which it inherits);
3. the same reads again, with every poll held;
4. a plan on that namespace starts: every poll must be answered (200, a new id) within
   2 s of the start.
Printed: reads per second and p50/p99 latency beside the baseline, the server's resident
memory before and with the polls, and when the last poll was answered. The targets (issue
18): reads at >= 0.8x the baseline rate with p99 under 50 ms, every poll answered within
2 s. Exit status 1 if one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.apollo_polls import Load, open_polls, poll_target, read_load, request
from tests.demo_server import DemoServer, demo_server

API = "/api/gray-release"
APOLLO = f"{API}/apollo/prod"
READ = (
    f"{API}/config/value?appName=demo-app&environment=prod&groupName=database"
    "&configKey=database.url&instanceId=reader-1&instanceIp=10.2.0.1"
)
PLAN = {
    "planName": "bench polls",
    "appName": "demo-app",
    "environment": "prod",
    "groupName": "database",
    "configKeys": ["database.url"],
    "grayStrategy": "IP_WHITELIST",
    "grayRules": {"ipWhitelist": ["192.168.1.100"]},
    "grayValues": {"database.url": "jdbc:mysql://db-new:3306/demo"},
}


def raise_file_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kilobytes = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return kilobytes / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, timeout: float) -> float:
    """Seconds until the server is idle (under a tenth of a core for half a second): every
    poll that arrived has then been checked and is held."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.05:
            return time.monotonic() - began
    raise SystemExit(f"the server was still busy {timeout:.0f} s after the polls were opened")


def call(served: DemoServer, path: str, body: object | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(
        f"{served.base}{API}{path}",
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def describe(name: str, load: Load, baseline: Load | None = None) -> str:
    ratio = f"  x{load.rate / baseline.rate:4.2f} baseline" if baseline else ""
    return (
        f"{name:<34} {load.rate:8.0f} req/s  p50 {load.percentile(0.5) * 1000:6.1f} ms  "
        f"p99 {load.percentile(0.99) * 1000:6.1f} ms{ratio}"
    )


async def crowd(args: argparse.Namespace, served: DemoServer) -> int:
    process, port = served.process, served.port
    baseline = await read_load(port, READ, connections=args.connections, seconds=args.seconds)
    idle_mb = resident_mb(process.pid)
    first = await request(port, poll_target(APOLLO, -1))
    known = json.loads(first.body)[0]["notificationId"]
    polls = await open_polls(port, poll_target(APOLLO, known), args.polls)
    storm = await asyncio.to_thread(wait_idle, process.pid, args.settle)
    early = [task for task in polls if task.done()]
    held_mb = resident_mb(process.pid)
    loaded = await read_load(port, READ, connections=args.connections, seconds=args.seconds)
    plan = await asyncio.to_thread(call, served, "/plan", PLAN)
    started = time.monotonic()
    await asyncio.to_thread(call, served, f"/plan/{plan['planId']}/start")
    answers = await asyncio.gather(*polls, return_exceptions=True)
    statuses: dict[object, int] = {}
    for answer in answers:
        key = answer.status if not isinstance(answer, BaseException) else type(answer).__name__
        statuses[key] = statuses.get(key, 0) + 1
    last = max((a.at for a in answers if not isinstance(a, BaseException)), default=started)
    print(describe("GET /config/value, no poll open", baseline))
    print(describe(f"GET /config/value, {args.polls} polls held", loaded, baseline))
    print(f"{'server memory, no poll open':<34} {idle_mb:8.1f} MB")
    print(
        f"{f'server memory, {args.polls} polls held':<34} {held_mb:8.1f} MB  "
        f"({(held_mb - idle_mb) * 1024 / max(1, args.polls):.1f} KB a poll)"
    )
    print(
        f"polls opened and checked by the server in {storm:.1f} s "
        f"(it was busy until then; reads are measured after)"
    )
    print(f"poll answers by status: {statuses}")
    print(f"last poll answered {last - started:.2f} s after the plan started")
    missed = []
    if loaded.rate < 0.8 * baseline.rate:
        missed.append(f"reads at x{loaded.rate / baseline.rate:.2f} of the baseline (< 0.8)")
    if loaded.percentile(0.99) >= 0.050:
        missed.append(f"read p99 {loaded.percentile(0.99) * 1000:.1f} ms (>= 50 ms)")
    if statuses.get(200, 0) != args.polls or early:
        missed.append(f"not every poll was held and answered 200: {statuses}, {len(early)} early")
    if last - started > 2.0:
        missed.append(f"last poll answered {last - started:.2f} s after the start (> 2 s)")
    for problem in missed:
        print(f"MISSED {problem}")
    return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--polls", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--settle", type=float, default=40.0, help="most seconds to wait for the polls' checks"
    )
    args = parser.parse_args()
    limit = raise_file_limit(args.polls + 1000)
    if limit < args.polls + 100:
        raise SystemExit(f"the file limit is {limit}: too few for {args.polls} polls")
    with (
        tempfile.TemporaryDirectory() as scratch,
        demo_server(f"sqlite:///{Path(scratch) / 'bench.db'}") as served,
    ):
        print(f"server pid {served.process.pid} on port {served.port}; file limit {limit}")
        try:
            return asyncio.run(crowd(args, served))
        finally:
            served.process.terminate()  # a clean stop; demo_server kills it if it hangs
            with contextlib.suppress(subprocess.TimeoutExpired):
                served.process.wait(30)


if __name__ == "__main__":
    sys.exit(main())
