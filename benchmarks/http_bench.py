"""Requests per second of ``GET /config/value`` beside a bare Flask endpoint, same server.

Run: ``make bench-http`` (or ``.venv/bin/python benchmarks/http_bench.py [--duration S]
[--rounds N] [--connections C] [--threads T] [--generator auto|wrk|python]``).

The demo app (``create_demo_app`` on a temporary SQLite file, with the example values) gets an
ACTIVE 10% PERCENTAGE plan on order-service/prod/default/feature.newPayment.enabled and one extra
route, ``/bench/bare``, that returns a constant JSON object of the same shape and size as a
config read. A child process serves it with ``grayrelease_adapters.flask.server.serve``
(waitress) on a free loopback port, so the load generator never shares the server's GIL.
Both endpoints run on the same server with the same thread count, in alternating rounds
(bare, config, bare, config, ...); each figure is the median of its rounds, and the ratio
config/bare is what the target is about: at least 0.8 of the bare endpoint's rate.

Config reads cycle through ``--instances`` instance ids so the read path sees many distinct
instances. The load generator is wrk when it is on PATH (``apt-get install wrk``), else a Python
one (keep-alive connections in threads, in a few processes); the output says which. Before the
rounds, a Python client checks a sample of config reads: all 200, the gray share near 10%.
Every SQL statement the server runs inside a request is counted: a config read must run none.
Exit status 1 if any response was not 2xx, a connection failed, the gray share is off, or SQL
ran inside a request; the figures are not trustworthy then. A ratio below 0.8 is reported only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import attrs

HOST = "127.0.0.1"
APP, ENV, GROUP, KEY = "order-service", "prod", "default", "feature.newPayment.enabled"
BARE_PATH = "/bench/bare"
SQL_COUNT_PATH = "/bench/sql-count"
ADMIN_TOKEN = "bench-admin-token-0123456789"
PERCENTAGE = 10
TARGET = 0.8
SPAWN = multiprocessing.get_context("spawn")
"""Fresh interpreters for the server and the Python generator: no fork of a threaded parent."""


# --- the server (child process) ---------------------------------------------------------------


def _serve_child(folder: str, threads: int, channel: Connection) -> None:
    """Build the demo app, start the 10% plan, add the bare route, serve until SIGTERM."""
    from flask import Flask, has_request_context
    from grayrelease_adapters.flask.demo import create_demo_app
    from grayrelease_adapters.flask.server import serve
    from sqlalchemy import event
    from sqlalchemy.engine import Engine as SqlEngine

    # waitress warns "Task queue depth is N" on every request that waits for a thread, which is
    # most of them when there are more connections than threads: quiet, for both endpoints.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        app: Flask = create_demo_app(
            f"sqlite:///{Path(folder) / 'bench.db'}", ADMIN_TOKEN, load_examples=True
        )
        state = app.extensions["grayrelease"].state(app)
        engine = state.engine
        plan = engine.create_plan(
            {
                "planName": "http bench",
                "appName": APP,
                "environment": ENV,
                "groupName": GROUP,
                "configKeys": [KEY],
                "grayStrategy": "PERCENTAGE",
                "grayRules": {"percentage": PERCENTAGE},
                "grayValues": {KEY: "true"},
            },
            actor="admin",
        )
        engine.start(plan.id, actor="admin")

        in_request = [0]

        @event.listens_for(SqlEngine, "before_cursor_execute")
        def count_sql(*args: Any) -> None:
            if has_request_context():
                in_request[0] += 1

        bare_payload = {"value": "false", "gray": False, "planId": plan.id}

        @app.get(BARE_PATH)
        def bare() -> dict[str, Any]:
            return bare_payload

        @app.get(SQL_COUNT_PATH)
        def sql_count() -> dict[str, Any]:
            return {"statements": in_request[0]}

        prefix = state.url_prefix
    except BaseException as exc:
        channel.send(("error", f"{type(exc).__name__}: {exc}"))
        raise

    def ready(port: int) -> None:
        channel.send(("ready", port, prefix, plan.id))

    serve(app, HOST, 0, threads=threads, on_ready=ready)


@attrs.frozen
class Server:
    process: BaseProcess
    port: int
    prefix: str
    plan_id: str


def start_server(folder: str, threads: int, timeout: float = 60.0) -> Server:
    receive, send = SPAWN.Pipe(duplex=False)
    process = SPAWN.Process(
        target=_serve_child, args=(folder, threads, send), name="bench-server", daemon=True
    )
    process.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise RuntimeError(f"the server did not start within {timeout:.0f} s")
        message = receive.recv()
    except EOFError:
        raise RuntimeError(f"the server exited during start-up ({process.exitcode})") from None
    except BaseException:
        stop_server(process)
        raise
    if message[0] != "ready":
        stop_server(process)
        raise RuntimeError(f"the server failed to start: {message[1]}")
    return Server(process, message[1], message[2], message[3])


def stop_server(process: BaseProcess) -> None:
    """SIGTERM (``serve`` flushes and returns); again after 10 s; SIGKILL after 15 s."""
    # Wait until the server is idle first. ``serve``'s handler raises ``Stop``, a plain
    # Exception: when the signal lands while waitress's loop is inside a channel's callback
    # (requests of the connections the generator just dropped), waitress logs and swallows it,
    # closes that channel, and keeps serving; threads then fail on a closed trigger (EBADF).
    time.sleep(0.3)
    for wait in (10, 5):
        if process.is_alive():
            process.terminate()
            process.join(wait)
    if process.is_alive():
        process.kill()
        process.join(5)


# --- requests -----------------------------------------------------------------------------


def instance(i: int) -> tuple[str, str]:
    return f"instance-{i:05d}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def config_path(prefix: str, i: int) -> str:
    instance_id, ip = instance(i)
    params = {
        "appName": APP,
        "environment": ENV,
        "groupName": GROUP,
        "configKey": KEY,
        "instanceId": instance_id,
        "instanceIp": ip,
    }
    return f"{prefix}/config/value?{urlencode(params)}"


@attrs.frozen
class Check:
    requests: int
    non_2xx: int
    gray: int
    wrong: int
    """Bodies that are not ``{"value": "true"|"false", "gray": ..., "planId": <the plan>}``."""


def check_config_reads(server: Server, sample: int) -> Check:
    """``sample`` config reads for distinct instances over one keep-alive connection."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    non_2xx = gray = wrong = 0
    try:
        for i in range(sample):
            conn.request("GET", config_path(server.prefix, i))
            response = conn.getresponse()
            body = response.read()
            if not 200 <= response.status < 300:
                non_2xx += 1
                continue
            payload = json.loads(body)
            expected = {
                "value": "true" if payload.get("gray") else "false",
                "gray": bool(payload.get("gray")),
                "planId": server.plan_id,
            }
            gray += payload.get("gray") is True
            wrong += payload != expected
        conn.request("GET", BARE_PATH)
        response = conn.getresponse()
        response.read()
        non_2xx += not 200 <= response.status < 300
    finally:
        conn.close()
    return Check(sample + 1, non_2xx, gray, wrong)


def gray_instances_recorded(server: Server) -> int:
    """How many distinct instances the plan recorded as served gray (the plan's instances API)."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        path = f"{server.prefix}/plan/{server.plan_id}/instances?pageSize=1"
        conn.request("GET", path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        total: int = json.loads(conn.getresponse().read())["total"]
    finally:
        conn.close()
    return total


def sql_statements_in_requests(server: Server) -> int:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        conn.request("GET", SQL_COUNT_PATH)
        count: int = json.loads(conn.getresponse().read())["statements"]
    finally:
        conn.close()
    return count


@attrs.frozen
class Round:
    requests: int
    seconds: float
    non_2xx: int
    errors: int
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


Generator = Callable[[int, Sequence[str], float], Round]
"""``(port, paths to cycle through, seconds) -> Round``."""


# --- wrk ----------------------------------------------------------------------------------

WRK_SCRIPT = """
local requests = {}
local threads = 0
counter = 0  -- a global: setup() gives each thread its own starting point

function setup(thread)
  thread:set("counter", threads * 7919)
  threads = threads + 1
end

function init(args)
  for path in io.lines(%(paths)s) do
    requests[#requests + 1] = wrk.format("GET", path)
  end
end

function request()
  counter = counter + 1
  return requests[counter %% #requests + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
"""Cycles through the paths (each wrk thread from its own offset); ``done`` prints a summary."""

WRK_SUMMARY = re.compile(r"^BENCH" + r" (\d+)" * 9 + r"$", re.MULTILINE)
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def wrk_generator(wrk: str, connections: int, threads: int, folder: str) -> Generator:
    scripts: dict[tuple[str, ...], str] = {}

    def run(port: int, paths: Sequence[str], seconds: float) -> Round:
        key = tuple(paths)
        if key not in scripts:
            script = Path(folder) / f"wrk-{len(scripts)}.lua"
            listing = script.with_suffix(".paths")
            listing.write_text("".join(f"{path}\n" for path in paths), encoding="utf-8")
            # A JSON string of an ASCII path is a valid Lua string literal.
            script.write_text(WRK_SCRIPT % {"paths": json.dumps(str(listing))}, encoding="utf-8")
            scripts[key] = str(script)
        command = [
            wrk,
            f"--threads={min(threads, connections)}",
            f"--connections={connections}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=10s",
            f"--script={scripts[key]}",
            f"http://{HOST}:{port}/",
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
        summary = WRK_SUMMARY.search(done.stdout)
        if done.returncode != 0 or summary is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
        requests, micros, status, *socket_errors, p50, p99 = (int(n) for n in summary.groups())
        non_2xx = WRK_NON_2XX.search(done.stdout)  # printed by wrk itself, when there are any
        if non_2xx is not None and int(non_2xx.group(1)) != status:
            raise RuntimeError(f"wrk's summary and its report disagree:\n{done.stdout}")
        return Round(requests, micros / 1e6, status, sum(socket_errors), p50 / 1e3, p99 / 1e3)

    return run


# --- the Python generator -------------------------------------------------------------------


def read_response(sock: socket.socket, buffer: bytes) -> tuple[int, bytes]:
    """One response's status; the bytes after it. Only ``Content-Length`` bodies are expected."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head = buffer[:end].lower()
    status = int(head[9:12])
    found = head.find(b"\r\ncontent-length:")
    if found < 0:
        raise ConnectionError("a response without Content-Length")
    start = found + len(b"\r\ncontent-length:")
    stop = head.find(b"\r\n", start)
    length = int(head[start : stop if stop >= 0 else len(head)])
    body_end = end + 4 + length
    while len(buffer) < body_end:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    return status, buffer[body_end:]


def _python_worker(
    port: int,
    paths: Sequence[str],
    offset: int,
    connections: int,
    seconds: float,
    barrier: Barrier,
    results: Connection,
) -> None:
    """``connections`` threads, one keep-alive socket each, cycling through ``paths``."""
    wire = [f"GET {p} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode() for p in paths]
    sockets = []
    for _ in range(connections):
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sockets.append(sock)
    totals = [0, 0, 0]  # requests, non-2xx, errors
    lock = threading.Lock()
    deadline = [0.0]

    def drive(sock: socket.socket, start: int) -> None:
        done = non_2xx = errors = 0
        buffer = b""
        i = start
        try:
            while time.monotonic() < deadline[0]:
                sock.sendall(wire[i % len(wire)])
                i += 1
                status, buffer = read_response(sock, buffer)
                done += 1
                non_2xx += not 200 <= status < 300
        except OSError:
            errors += 1
        finally:
            sock.close()
        with lock:
            totals[0] += done
            totals[1] += non_2xx
            totals[2] += errors

    barrier.wait(60)
    started = time.monotonic()
    deadline[0] = started + seconds
    workers = [
        threading.Thread(target=drive, args=(sock, offset + n * 7919))
        for n, sock in enumerate(sockets)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.send((*totals, time.monotonic() - started))


def python_generator(connections: int, processes: int) -> Generator:
    processes = max(1, min(processes, connections))

    def run(port: int, paths: Sequence[str], seconds: float) -> Round:
        shares = [
            connections // processes + (n < connections % processes) for n in range(processes)
        ]
        barrier = SPAWN.Barrier(processes + 1)
        pipes = [SPAWN.Pipe(duplex=False) for _ in shares]
        workers = [
            SPAWN.Process(
                target=_python_worker,
                args=(port, list(paths), n * 104729, share, seconds, barrier, send),
                daemon=True,
            )
            for n, (share, (_, send)) in enumerate(zip(shares, pipes, strict=True))
        ]
        try:
            for worker in workers:
                worker.start()
            for _, send in pipes:
                send.close()
            barrier.wait(60)  # every worker has connected: the clock starts now
            totals = [0, 0, 0]
            elapsed = 0.0
            for receive, _ in pipes:
                if not receive.poll(seconds + 60):
                    raise RuntimeError("a Python load worker did not report")
                *counts, took = receive.recv()
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
                elapsed = max(elapsed, took)
        finally:
            for worker in workers:
                worker.join(10)
                if worker.is_alive():
                    worker.kill()
        return Round(totals[0], elapsed, totals[1], totals[2])

    return run


# --- the run --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round [5]")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each endpoint [5]")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections [16]")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads [8]")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk if on PATH (auto), or force one [auto]",
    )
    parser.add_argument(
        "--load-workers",
        type=int,
        default=None,
        help="wrk threads or Python generator processes [wrk: 1, python: 2]",
    )
    parser.add_argument(
        "--instances", type=int, default=10_000, help="distinct instance ids [10000]"
    )
    parser.add_argument(
        "--sample", type=int, default=2000, help="config reads checked for the gray share [2000]"
    )
    args = parser.parse_args(argv)
    for name in ("duration", "rounds", "connections", "threads", "instances", "sample"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.load_workers is not None and args.load_workers <= 0:
        parser.error("--load-workers must be positive")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # so `finally` stops the server on SIGTERM too
    wrk = shutil.which("wrk") if args.generator != "python" else None
    if args.generator == "wrk" and wrk is None:
        print("wrk is not on PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="grayrelease-http-bench-") as folder:
        if wrk is not None:
            workers = args.load_workers or 1
            version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
            generator = wrk_generator(wrk, args.connections, workers, folder)
            described = (
                f"wrk ({version.split(' [')[0].strip() or wrk}), "
                f"{min(workers, args.connections)} thread(s)"
            )
        else:
            workers = args.load_workers or 2
            generator = python_generator(args.connections, workers)
            why = "forced" if args.generator == "python" else "wrk is not on PATH"
            described = (
                f"Python, {min(workers, args.connections)} process(es) of keep-alive threads "
                f"({why}; it may cap both rates, which pushes the ratio towards 1)"
            )
        server = start_server(folder, args.threads)
        try:
            return run_rounds(args, server, generator, described)
        finally:
            stop_server(server.process)


def run_rounds(args: argparse.Namespace, server: Server, run: Generator, described: str) -> int:
    print(f"load generator: {described}, {args.connections} connection(s)")
    print(
        f"server: waitress, {args.threads} thread(s), http://{HOST}:{server.port} "
        f"(server pid {server.process.pid}, {os.cpu_count()} CPU(s))"
    )
    ok = True

    check = check_config_reads(server, args.sample)
    share = check.gray / args.sample
    # Four standard deviations of a binomial share around 10% (a false alarm 1 run in 15000).
    spread = max(0.01, 4 * math.sqrt(0.1 * 0.9 / args.sample))
    share_ok = abs(share - PERCENTAGE / 100) <= spread
    print(
        f"check: {check.requests} requests (Python client), non-2xx {check.non_2xx}, "
        f"unexpected bodies {check.wrong}; gray share {check.gray}/{args.sample} = {share:.2%} "
        f"(plan {PERCENTAGE}%, allowed +-{spread:.2%}): "
        f"{'ok' if share_ok else 'OFF'}"
    )
    ok &= share_ok and check.non_2xx == 0 and check.wrong == 0

    bare_paths = [BARE_PATH]
    config_paths = [config_path(server.prefix, i) for i in range(args.instances)]
    cases = {"bare": bare_paths, "config": config_paths}
    results: dict[str, list[Round]] = {name: [] for name in cases}
    sql_before = sql_statements_in_requests(server)
    print(
        f"{'round':>5}  {'endpoint':8} {'req/s':>9} {'requests':>9} {'non-2xx':>8} "
        f"{'errors':>7} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for number in range(1, args.rounds + 1):
        for name, paths in cases.items():
            result = run(server.port, paths, args.duration)
            results[name].append(result)
            latency = (
                f"{result.p50_ms:7.2f} {result.p99_ms:7.2f}"
                if result.p50_ms is not None and result.p99_ms is not None
                else f"{'-':>7} {'-':>7}"
            )
            print(
                f"{number:5}  {name:8} {result.rate:9.1f} {result.requests:9} "
                f"{result.non_2xx:8} {result.errors:7} {latency}",
                flush=True,
            )
    sql = sql_statements_in_requests(server) - sql_before
    recorded = gray_instances_recorded(server)  # runs SQL in a request: after the count

    bare = statistics.median(r.rate for r in results["bare"])
    config = statistics.median(r.rate for r in results["config"])
    ratio = config / bare if bare > 0 else 0.0
    # Each config round beside the bare round just before it: robust to a machine whose speed
    # drifts during the run (another job starting), which moves both rounds of a pair alike.
    paired = statistics.median(
        c.rate / b.rate if b.rate > 0 else 0.0
        for b, c in zip(results["bare"], results["config"], strict=True)
    )
    non_2xx = sum(r.non_2xx for rounds in results.values() for r in rounds)
    errors = sum(r.errors for rounds in results.values() for r in rounds)
    print(
        f"median requests/second: bare {bare:.1f}, config/value {config:.1f} "
        f"({args.rounds} round(s) of {args.duration:g} s each, {args.instances} instance ids)"
    )
    print(
        f"ratio config/bare: {ratio:.3f}  target >= {TARGET}  "
        f"({'met' if ratio >= TARGET else 'NOT met'}); median of per-round ratios {paired:.3f}"
    )
    print(f"responses: non-2xx {non_2xx}, connection errors {errors}")
    print(f"SQL statements run inside requests during the rounds: {sql} (must be 0)")
    ids = max(args.instances, args.sample)
    print(
        f"instances the plan recorded as gray: {recorded} of the {ids} instance ids sent "
        f"({recorded / ids:.2%})"
    )
    ok &= non_2xx == 0 and errors == 0 and sql == 0
    if not ok:
        print("FAILED: the checks above did not all pass; the figures are not trustworthy")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
