"""Many processes, one truth: real processes on one PostgreSQL (and MariaDB) database.

Operators racing on one plan from two processes, plan changes crossing from one
``grayrelease serve`` to another within ``cache_ttl``, a server killed with SIGKILL, and
two servers under read load while plans go through their lives. Every server is a real
``grayrelease serve`` subprocess on loopback; every operator a real process or HTTP client.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import attrs
import pytest

from grayrelease_core import Client, ConfigRef, GrayRelease, GrayReleaseError, Plan, hookimpl

from .databases import fresh_database

TOKEN = "process-test-admin-token"
HOST = "127.0.0.1"
APP, ENV, GROUP = "proc-app", "prod", "default"
EVENTS = {
    "start": "STARTED",
    "pause": "PAUSED",
    "resume": "RESUMED",
    "complete": "COMPLETED",
    "rollback": "ROLLED_BACK",
}
TARGET = {
    "start": "ACTIVE",
    "pause": "PAUSED",
    "resume": "ACTIVE",
    "complete": "COMPLETED",
    "rollback": "ROLLBACK",
}
MARGIN = 0.5
"""Seconds allowed beyond ``cache_ttl`` for a sync round and a request in flight."""

JSON = dict[str, Any]


def ref(key: str) -> ConfigRef:
    return ConfigRef(APP, ENV, GROUP, key)


def plan_body(key: str, gray: str, strategy: str = "IP_WHITELIST", rules: Any = None) -> JSON:
    return {
        "planName": f"process test {key}",
        "appName": APP,
        "environment": ENV,
        "groupName": GROUP,
        "configKeys": [key],
        "grayStrategy": strategy,
        "grayRules": rules if rules is not None else {"ipWhitelist": ["10.1.0.0/16"]},
        "grayValues": {key: gray},
    }


def engine_for(url: str) -> GrayRelease:
    """The test's own view of the database (no sync thread: it only reads and seeds)."""
    return GrayRelease.from_settings(
        {"database_url": url, "backend": "sql", "background_sync": False}, load_entrypoints=False
    )


def seconds(wire_time: str) -> float:
    """An API timestamp (``...Z``) as a POSIX time, comparable with ``time.time()``."""
    return datetime.fromisoformat(wire_time).timestamp()


# --- 1. optimistic locking across processes -------------------------------------------------


class Gate:
    """Holds an action after it has loaded the plan (the authorize hook runs between the load
    and the write) until the other process's action got as far: both then write against the
    same version, so the database's version check is what decides."""

    def __init__(self, barrier: Any) -> None:
        self.barrier = barrier
        self.armed = False

    @hookimpl
    def grayrelease_authorize(self, actor: str, action: str, plan: Plan | None) -> bool:
        if self.armed and plan is not None:
            self.armed = False
            self.barrier.wait(timeout=30)
        return True


def operator_process(url: str, name: str, barrier: Any, commands: Any, results: Any) -> None:
    """A worker process with its own engine; runs ``(action, plan_id, version)`` commands."""
    gate = Gate(barrier)
    settings = {"database_url": url, "backend": "sql", "background_sync": False}
    with GrayRelease.from_settings(settings, plugins=[gate], load_entrypoints=False) as gr:
        results.put((name, "ready", None))
        for action, plan_id, version in iter(commands.get, None):
            gate.armed = True
            try:
                plan = getattr(gr, action)(plan_id, actor=name, expected_version=version)
            except GrayReleaseError as exc:
                results.put((name, exc.code, (exc.message, exc.details)))
            except Exception as exc:  # reported to the test, which fails on it
                results.put((name, "crash", repr(exc)))
            else:
                results.put((name, "ok", (plan.status.value, plan.version)))
            finally:
                gate.armed = False


ROUNDS = [
    # (state the plan is put in, action of process one, action of process two)
    ("ACTIVE", "pause", "rollback"),
    ("ACTIVE", "complete", "complete"),
    ("PAUSED", "resume", "rollback"),
    ("ACTIVE", "rollback", "complete"),
    ("PAUSED", "complete", "rollback"),
    ("ACTIVE", "pause", "pause"),
]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_two_operator_processes_on_one_plan_exactly_one_wins(kind: str, tmp_path: Path) -> None:
    """Two processes, each with its own engine, act on one plan with the same expected
    version, both past their read of it: one wins, the other gets CONFLICT, one audit row."""
    ctx = multiprocessing.get_context("spawn")
    with fresh_database(kind, tmp_path) as url, engine_for(url) as gr, ExitStack() as stack:
        barrier = ctx.Barrier(2)
        results = ctx.Queue()
        commands = {name: ctx.Queue() for name in ("one", "two")}
        workers = [
            ctx.Process(
                target=operator_process,
                args=(url, name, barrier, queue, results),
                name=f"operator-{name}",
            )
            for name, queue in commands.items()
        ]
        for worker in workers:
            worker.start()

        def stop_workers() -> None:
            for queue in commands.values():
                queue.put(None)
            for worker in workers:
                worker.join(timeout=20)
                if worker.is_alive():
                    worker.kill()
                    worker.join()
                worker.close()
            for queue in (*commands.values(), results):
                queue.close()
                queue.join_thread()

        stack.callback(stop_workers)
        assert sorted(results.get(timeout=60)[:2] for _ in workers) == [
            ("one", "ready"),
            ("two", "ready"),
        ]

        for n, (state, first, second) in enumerate(ROUNDS):
            key, original, gray = f"race.k{n}", f"orig-{n}", f"gray-{n}"
            gr.backend.publish(ref(key), original, actor="seed")
            plan = gr.start(gr.create_plan(plan_body(key, gray), actor="seed").id, actor="seed")
            if state == "PAUSED":
                plan = gr.pause(plan.id, actor="seed")
            rows_before = gr.plan_logs(plan.id).total
            commands["one"].put((first, plan.id, plan.version))
            commands["two"].put((second, plan.id, plan.version))
            answers = {}
            for _ in workers:
                name, code, payload = results.get(timeout=60)
                answers[name] = (code, payload)
            assert not [a for a in answers.values() if a[0] == "crash"], answers
            winners = [name for name, (code, _) in answers.items() if code == "ok"]
            assert len(winners) == 1, f"round {n} ({first} vs {second}): {answers}"
            winner = winners[0]
            loser = "two" if winner == "one" else "one"
            won = first if winner == "one" else second
            code, (message, details) = answers[loser]
            assert code == "CONFLICT", answers
            assert "changed meanwhile" in message, message  # the database's check refused it
            assert details["expectedVersion"] == plan.version
            if "pendingAction" in details:
                # Refused while the winner's publishing action was under way (its claim),
                # before the loser touched the backend.
                assert details["pendingAction"]["action"] == won
                assert details["version"] == plan.version
            else:
                assert details["version"] == plan.version + 1
            assert answers[winner][1] == (TARGET[won], plan.version + 1)

            stored = gr.get_plan(plan.id)
            assert (stored.status.value, stored.version) == (TARGET[won], plan.version + 1)
            logs = gr.plan_logs(plan.id).items
            assert len(logs) == rows_before + 1, [log.action for log in logs]
            last = logs[-1]
            assert (last.action, last.actor) == (EVENTS[won], winner)
            assert last.before is not None
            assert last.after is not None
            assert (last.before["version"], last.after["version"]) == (
                plan.version,
                plan.version + 1,
            )
            # A losing complete never published: the backend holds what the winner left.
            gr.backend.refresh()
            expected = gray if won == "complete" else original
            assert gr.backend.get(ref(key)) == expected, f"round {n}: {answers}"


# --- servers --------------------------------------------------------------------------------


class Server:
    """One ``grayrelease serve`` subprocess, its output in a file."""

    def __init__(self, url: str, log_path: Path, options: list[str]) -> None:
        self.log_path = log_path
        self._log: IO[str] = log_path.open("w", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "grayrelease_adapters.flask.cli",
                "--database-url",
                url,
                "serve",
                "--port",
                "0",
                "--admin-token",
                TOKEN,
                *options,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.port = 0

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.output())
            if found:
                self.port = int(found.group(1))
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"server did not start:\n{self.output()}")

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.port}/api/gray-release"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM (a clean stop that writes buffered hits), then SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@contextmanager
def servers(
    url: str, tmp_path: Path, count: int, *, cache_ttl: float, hit_flush_interval: float = 5.0
) -> Iterator[list[Server]]:
    """``count`` servers on one database, all stopped at the end whatever happens."""
    started: list[Server] = []
    options = ["--cache-ttl", str(cache_ttl), "--hit-flush-interval", str(hit_flush_interval)]
    try:
        for n in range(count):
            started.append(Server(url, tmp_path / f"server-{n}.log", options))
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


def call(
    url: str, method: str = "GET", body: Any = None, version: int | None = None
) -> tuple[int, Any]:
    """One HTTP request as the admin; the status and the JSON answer (errors included)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if version is not None:
        request.add_header("If-Match", f'"{version}"')
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def ok(answer: tuple[int, Any], status: int = 200) -> Any:
    assert answer[0] == status, answer
    return answer[1]


def value_query(key: str, instance: str, ip: str) -> str:
    return "/config/value?" + urllib.parse.urlencode(
        {
            "appName": APP,
            "environment": ENV,
            "groupName": GROUP,
            "configKey": key,
            "instanceId": instance,
            "instanceIp": ip,
        }
    )


def read(server: Server, key: str, instance: str, ip: str) -> JSON:
    answer: JSON = ok(call(server.api + value_query(key, instance, ip)))
    return answer


def put_value(server: Server, key: str, value: str) -> None:
    item = {"appName": APP, "environment": ENV, "groupName": GROUP, "configKey": key}
    ok(call(server.api.replace("/gray-release", "/config/item"), "PUT", {**item, "value": value}))


def within(seconds_: float, check: Callable[[], bool], what: str) -> float:
    """Poll ``check`` until true; the seconds it took, or a failure naming ``what``."""
    began = time.monotonic()
    while True:
        if check():
            return time.monotonic() - began
        if time.monotonic() - began > seconds_:
            raise AssertionError(f"not within {seconds_:.2f}s: {what}")
        time.sleep(0.02)


class Fresh:
    """New instance ids, each never read before."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}-{self._n}"


# --- 2. cache coherence between two servers -------------------------------------------------


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_plan_changed_in_one_server_is_served_by_the_other_within_cache_ttl(
    kind: str, tmp_path: Path
) -> None:
    """Start, pause, resume and rollback through server A reach server B within cache_ttl;
    while paused, instances recorded by either server keep the gray value on both."""
    ttl = 0.3
    bound = ttl + MARGIN
    key, gray = "coherence.flag", "on"
    fresh = Fresh("fresh")
    inside, outside = "10.1.2.3", "10.2.0.1"  # in and out of the plan's 10.1.0.0/16
    with fresh_database(kind, tmp_path) as url:
        engine_for(url).close()  # the schema, before two servers start on it
        with servers(url, tmp_path, 2, cache_ttl=ttl) as (a, b):
            put_value(a, key, "off")
            within(bound, lambda: read(b, key, "x", outside)["value"] == "off", "B sees the value")

            plan = ok(call(f"{a.api}/plan", "POST", plan_body(key, gray)), 201)
            pid = plan["planId"]
            ok(call(f"{a.api}/plan/{pid}/start", "POST", version=plan["version"]))
            assert read(a, key, fresh(), inside) == {"value": gray, "gray": True, "planId": pid}
            within(bound, lambda: read(b, key, fresh(), inside)["gray"], "B serves gray")
            assert read(b, key, fresh(), outside) == {"value": "off", "gray": False, "planId": pid}

            # Instances that got the gray value from A and from B before the pause.
            via_a = [f"a-{n}" for n in range(5)]
            via_b = [f"b-{n}" for n in range(5)]
            assert all(read(a, key, i, inside)["gray"] for i in via_a)
            assert all(read(b, key, i, inside)["gray"] for i in via_b)

            paused = ok(call(f"{a.api}/plan/{pid}/pause", "POST", version=2))
            assert paused["status"] == "PAUSED"
            assert not read(a, key, fresh(), inside)["gray"], "A admits no new instance"
            within(bound, lambda: not read(b, key, fresh(), inside)["gray"], "B sees the pause")
            for server in (a, b):
                assert not any(read(server, key, fresh(), inside)["gray"] for _ in range(5))
            # Recorded instances keep the gray value: on B at once (A wrote its own before
            # the pause, B writes its own when it sees it), on A once it has reloaded B's.
            assert all(read(b, key, i, inside)["gray"] for i in via_a + via_b)
            within(
                2 * ttl + MARGIN,
                lambda: all(read(a, key, i, inside)["gray"] for i in via_a + via_b),
                "A keeps the gray value for the instances B recorded",
            )
            listed = ok(call(f"{b.api}/plan/{pid}/instances?pageSize=200"))
            assert {r["instanceId"] for r in listed["items"]} >= set(via_a + via_b)

            resumed = ok(call(f"{a.api}/plan/{pid}/resume", "POST", version=3))
            assert resumed["status"] == "ACTIVE"
            within(bound, lambda: read(b, key, fresh(), inside)["gray"], "B sees the resume")

            rolled = ok(call(f"{a.api}/plan/{pid}/rollback", "POST", {"reason": "test"}, 4))
            assert rolled["status"] == "ROLLBACK"
            original = {"value": "off", "gray": False, "planId": None}
            assert read(a, key, via_a[0], inside) == original
            within(
                bound,
                lambda: all(read(b, key, i, inside) == original for i in via_a + via_b),
                "B serves the original to everyone after the rollback",
            )

            logs = ok(call(f"{b.api}/plan/{pid}/logs"))["items"]
            assert [row["action"] for row in logs] == [
                "CREATED",
                "STARTED",
                "PAUSED",
                "RESUMED",
                "ROLLED_BACK",
            ]
            assert [row["after"]["version"] for row in logs] == [1, 2, 3, 4, 5]


# --- 3. a server killed with SIGKILL ----------------------------------------------------------


def test_a_killed_server_loses_at_most_its_last_flush_interval_and_no_plan_change(
    tmp_path: Path,
) -> None:
    """SIGKILL under reads and a rollback in flight: every answered plan action is stored
    with its audit row, the in-flight one wholly or not at all, and every instance answered
    before the last flush interval is recorded."""
    ttl, flush = 0.2, 0.5
    key, other = "crash.flag", "crash.other"
    with fresh_database("postgresql", tmp_path) as url:
        with engine_for(url) as gr:
            gr.backend.publish(ref(key), "off", actor="seed")
            gr.backend.publish(ref(other), "off", actor="seed")
        with servers(url, tmp_path, 1, cache_ttl=ttl, hit_flush_interval=flush) as (a,):
            served = ok(call(f"{a.api}/plan", "POST", plan_body(key, "on")), 201)
            pid = served["planId"]
            ok(call(f"{a.api}/plan/{pid}/start", "POST", version=1))

            reads: list[tuple[str, float, float]] = []  # instance, sent, answered
            stop = threading.Event()

            def reader() -> None:
                connection = http.client.HTTPConnection(HOST, a.port, timeout=10)
                try:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        instance = f"crash-{n}"
                        sent = time.time()
                        connection.request(
                            "GET", "/api/gray-release" + value_query(key, instance, "10.1.0.9")
                        )
                        response = connection.getresponse()
                        assert json.loads(response.read())["gray"]
                        reads.append((instance, sent, time.time()))
                except (OSError, http.client.HTTPException):
                    pass  # the server was killed under us
                finally:
                    connection.close()

            thread = threading.Thread(target=reader)
            thread.start()
            try:
                # Plan changes while reads go on: each is committed once it has answered.
                second = ok(call(f"{a.api}/plan", "POST", plan_body(other, "on")), 201)
                oid = second["planId"]
                for version, action in enumerate(("start", "pause", "resume"), start=1):
                    ok(call(f"{a.api}/plan/{oid}/{action}", "POST", version=version))
                time.sleep(2.0)
                # A rollback in flight when the process dies: all of it or none of it.
                answered: list[tuple[int, Any]] = []

                def roll_back() -> None:
                    with suppress(OSError, http.client.HTTPException):  # killed, unanswered
                        answered.append(call(f"{a.api}/plan/{oid}/rollback", "POST", version=4))

                racer = threading.Thread(target=roll_back)
                racer.start()
                time.sleep(random.uniform(0.0, 0.03))
                a.process.kill()
                killed_at = time.time()
                a.process.wait()
            finally:
                stop.set()
                thread.join()
            racer.join()
        assert a.process.returncode == -signal.SIGKILL

        with engine_for(url) as gr:
            crashed = gr.get_plan(pid)
            assert (crashed.status.value, crashed.version) == ("ACTIVE", 2)
            assert [log.action for log in gr.plan_logs(pid).items] == ["CREATED", "STARTED"]

            rolled_back = bool(answered) and ok(answered[0])["status"] == "ROLLBACK"
            survivor = gr.get_plan(oid)
            actions = [log.action for log in gr.plan_logs(oid).items]
            assert actions[:4] == ["CREATED", "STARTED", "PAUSED", "RESUMED"]
            if survivor.status.value == "ROLLBACK":
                assert (survivor.version, actions[4:]) == (5, ["ROLLED_BACK"])
            else:
                assert not rolled_back, "an answered rollback was lost"
                assert (survivor.status.value, survivor.version, actions[4:]) == ("ACTIVE", 4, [])

            stored = {r.instance_id: r for r in gr.plan_instances(pid, 1, 100_000).items}
            sent = {instance for instance, _, _ in reads}
            assert set(stored) <= sent | {f"crash-{len(reads) + 1}"}  # one may be in flight
            assert all(r.hits == 1 for r in stored.values())
            # Every instance answered before the last flush interval (and a sync round) is there.
            written_by = killed_at - (flush + ttl + MARGIN)
            must = [instance for instance, _, answered_at in reads if answered_at < written_by]
            assert len(must) > 50, f"too few reads to judge: {len(reads)}"
            missing = [instance for instance in must if instance not in stored]
            assert not missing, f"{len(missing)} of {len(must)} flushed instances lost"


# --- 4. two servers under load while plans go through their lives ---------------------------


class Read(NamedTuple):
    sent: float
    answered: float
    server: int
    key: str
    instance: str
    status: int
    answer: JSON


class Attempt(NamedTuple):
    plan: str
    action: str
    server: int
    status: int
    body: JSON


INSTANCES = [(f"inst-{n}", f"10.0.{n % 2}.{n % 200 + 1}") for n in range(150)]
IP_OF = dict(INSTANCES)
LOAD_KEYS = ["load.k0", "load.k1", "load.k2"]
STRATEGIES = [
    ("IP_WHITELIST", {"ipWhitelist": ["10.0.0.0/24"]}),
    ("PERCENTAGE", {"percentage": 50}),
    ("PERCENTAGE", {"percentage": 30, "stickiness": "instanceIp"}),
]


def test_two_servers_under_read_load_while_plans_change_stay_consistent(tmp_path: Path) -> None:
    """Four readers on two servers while an operator drives six plans through both (each
    action raced through both servers with one If-Match, plus a stale and a forbidden one);
    then histories, audit rows, versions, answers and instance records must all agree."""
    ttl, flush, phase = 0.3, 1.0, 1.4
    stale = ttl + MARGIN
    readers = 4
    with fresh_database("postgresql", tmp_path) as url:
        with engine_for(url) as gr:
            for n, key in enumerate(LOAD_KEYS):
                gr.backend.publish(ref(key), f"orig-{n}", actor="seed")
        with servers(url, tmp_path, 2, cache_ttl=ttl, hit_flush_interval=flush) as pair:
            reads: list[Read] = []
            attempts: list[Attempt] = []
            ends: dict[str, str] = {}  # plan id -> its last action (rollback or complete)
            stop = threading.Event()

            def reader(seed: int) -> None:
                rng = random.Random(seed)
                connections = [http.client.HTTPConnection(HOST, s.port, timeout=30) for s in pair]
                mine: list[Read] = []
                try:
                    while not stop.is_set():
                        which = rng.randrange(2)
                        key = rng.choice(LOAD_KEYS)
                        instance, ip = rng.choice(INSTANCES)
                        path = "/api/gray-release" + value_query(key, instance, ip)
                        sent = time.time()
                        connections[which].request("GET", path)
                        response = connections[which].getresponse()
                        answer = json.loads(response.read())
                        mine.append(
                            Read(sent, time.time(), which, key, instance, response.status, answer)
                        )
                finally:
                    for connection in connections:
                        connection.close()
                    reads.extend(mine)

            def act(plan_id: str, action: str, which: int, version: int) -> Attempt:
                body = {"reason": "load"} if action == "rollback" else None
                status, answer = call(
                    f"{pair[which].api}/plan/{plan_id}/{action}", "POST", body, version
                )
                return Attempt(plan_id, action, which, status, answer)

            def operator() -> None:
                versions: dict[str, int] = {}
                with ThreadPoolExecutor(max_workers=2) as pool:

                    def race(plan_id: str, action: str) -> None:
                        # The same action through both servers at once, with the same If-Match.
                        futures = [
                            pool.submit(act, plan_id, action, which, versions[plan_id])
                            for which in (0, 1)
                        ]
                        results = [f.result() for f in futures]
                        attempts.extend(results)
                        for result in results:
                            if result.status == 200:
                                versions[plan_id] = result.body["version"]

                    for cycle in range(2):
                        plans = []
                        for n, key in enumerate(LOAD_KEYS):
                            strategy, rules = STRATEGIES[n]
                            body = plan_body(key, f"gray-{cycle}-{n}", strategy, rules)
                            created = ok(call(f"{pair[n % 2].api}/plan", "POST", body), 201)
                            plans.append(created["planId"])
                            versions[created["planId"]] = created["version"]
                        for step in ("start", "pause", "resume", "end"):
                            for n, plan_id in enumerate(plans):
                                action = step
                                if step == "end":
                                    action = "complete" if (cycle, n) == (1, 2) else "rollback"
                                    ends[plan_id] = action
                                race(plan_id, action)
                                # Refused: a stale version and an action the state forbids.
                                attempts.append(act(plan_id, "pause", n % 2, versions[plan_id] - 1))
                                forbidden = "resume" if step != "pause" else "pause"
                                attempts.append(
                                    act(plan_id, forbidden, 1 - n % 2, versions[plan_id])
                                )
                            time.sleep(phase)

            threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(readers)]
            for thread in threads:
                thread.start()
            began = time.monotonic()
            try:
                operator()
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            elapsed = time.monotonic() - began
            final = {pid: ok(call(f"{pair[0].api}/plan/{pid}")) for pid in ends}
            assert final == {pid: ok(call(f"{pair[1].api}/plan/{pid}")) for pid in ends}
            logs = {pid: ok(call(f"{pair[1].api}/plan/{pid}/logs"))["items"] for pid in ends}
            for server in pair:
                assert server.stop() == 0, server.output()  # a clean stop writes every hit
                assert "buffered instance hits written" in server.output()

        assert len(reads) > 1000, f"only {len(reads)} reads in {elapsed:.1f}s"
        assert all(r.status == 200 for r in reads), [r for r in reads if r.status != 200][:3]
        with engine_for(url) as gr:
            check_plan_histories(final, logs, attempts, ends)
            check_reads_and_records(gr, reads, final, ends, ttl, stale)


def check_plan_histories(
    final: dict[str, JSON],
    logs: dict[str, list[JSON]],
    attempts: list[Attempt],
    ends: dict[str, str],
) -> None:
    """One winner per race, one audit row per success and none per failure, versions 1..n."""
    for pid, plan in final.items():
        mine = [a for a in attempts if a.plan == pid]
        wins = [a for a in mine if a.status == 200]
        assert [a.action for a in wins] == ["start", "pause", "resume", ends[pid]], mine
        assert [a.body["version"] for a in wins] == [2, 3, 4, 5]
        refused = [a for a in mine if a.status != 200]
        assert len(refused) == len(mine) - 4
        assert all(a.status == 409 for a in refused), refused
        codes = Counter(a.body["error"]["code"] for a in refused)
        assert codes == {"CONFLICT": 8, "INVALID_TRANSITION": 4}, codes
        for a in refused:
            if a.body["error"]["code"] == "CONFLICT":
                assert "changed" in a.body["error"]["message"]
        assert plan["status"] == TARGET[ends[pid]]
        assert plan["version"] == 5
        assert [row["action"] for row in logs[pid]] == ["CREATED"] + [
            EVENTS[a.action] for a in wins
        ]
        assert [row["statusAfter"] for row in logs[pid]] == ["DRAFT"] + [
            TARGET[a.action] for a in wins
        ]
        assert [row["after"]["version"] for row in logs[pid]] == [1, 2, 3, 4, 5]
        assert [row["at"] for row in logs[pid][1:]] == [a.body["updatedAt"] for a in wins]


def check_reads_and_records(
    gr: GrayRelease,
    reads: list[Read],
    final: dict[str, JSON],
    ends: dict[str, str],
    ttl: float,
    stale: float,
) -> None:
    """What every client was told agrees with the plans' histories and the instance table."""
    at: dict[str, dict[str, float]] = {}
    for pid in final:
        logs = gr.plan_logs(pid).items
        at[pid] = {EVENTS_BACK[log.action]: log.at.timestamp() for log in logs[1:]}
    by_key: dict[str, list[str]] = defaultdict(list)  # key -> plan ids in start order
    for pid in sorted(final, key=lambda p: at[p]["start"]):
        by_key[final[pid]["configKeys"][0]].append(pid)
    matchers = {}
    for pid in final:
        # As it was while live: completing a plan moves its percentage to 100.
        plan = gr.get_plan(pid)
        strategy = gr.strategies.get(plan.strategy)
        started = attrs.evolve(plan.progress, percentage=strategy.initial_percentage(plan.rules))
        matchers[pid] = strategy.compile(attrs.evolve(plan, progress=started))

    gray_reads: dict[tuple[str, str], list[Read]] = defaultdict(list)
    for r in reads:
        if r.answer["gray"]:
            gray_reads[(r.answer["planId"], r.instance)].append(r)
    problems: list[str] = []

    for key, pids in by_key.items():
        original = f"orig-{LOAD_KEYS.index(key)}"
        for pid in pids:
            t = at[pid]
            end = t[ends[pid]]
            gray_value = final[pid]["grayValues"][key]
            after_end = gray_value if ends[pid] == "complete" else original
            following = [p for p in pids if at[p]["start"] > t["start"]]
            next_start = at[following[0]]["start"] if following else float("inf")
            # Members at the pause: whoever got the gray value before the pause was seen.
            members = {
                r.instance
                for (plan_id, _), rs in gray_reads.items()
                if plan_id == pid
                for r in rs
                if r.sent < t["pause"] + stale
            }
            for r in reads:
                if r.key != key:
                    continue
                mine = r.answer["planId"] == pid
                gray = mine and r.answer["gray"]
                matches = matchers[pid](Client(r.instance, IP_OF[r.instance]))
                if gray and r.answered < t["start"]:
                    problems.append(f"gray before the start: {r}")
                if gray and r.sent > end + stale:
                    problems.append(f"gray {r.sent - end:.2f}s after {ends[pid]}: {r}")
                if between(r, end + stale, next_start) and r.answer != {
                    "value": after_end,
                    "gray": False,
                    "planId": None,
                }:
                    problems.append(f"not the value after {ends[pid]}: {r}")
                for since, until in ((t["start"], t["pause"]), (t["resume"], end)):
                    if not between(r, since + stale, until):
                        continue
                    if gray != matches or not mine:
                        problems.append(f"active plan answered against its rules: {r}")
                    if not gray and r.answer["value"] != original:
                        problems.append(f"not the original outside the gray set: {r}")
                paused = between(r, t["pause"] + stale, t["resume"])
                if paused and gray and r.instance not in members:
                    problems.append(f"a new instance got gray while paused: {r}")
                settled = between(r, t["pause"] + 2 * ttl + MARGIN, t["resume"])
                if settled and r.instance in members and matches and not gray:
                    problems.append(f"a recorded instance lost gray while paused: {r}")
    assert not problems, f"{len(problems)} problems, first: {problems[:5]}"

    # The instance table holds exactly the instances told the gray value, never more hits.
    recorded: dict[tuple[str, str], Any] = {}
    for pid in final:
        for row in gr.plan_instances(pid, 1, 100_000).items:
            recorded[(pid, row.instance_id)] = row
    assert set(recorded) == set(gray_reads), (
        sorted(set(recorded) ^ set(gray_reads))[:5],
        len(recorded),
        len(gray_reads),
    )
    for pair, row in recorded.items():
        assert 1 <= row.hits <= len(gray_reads[pair]), (pair, row.hits, len(gray_reads[pair]))
        pid = pair[0]
        assert at[pid]["start"] - stale <= row.first_seen.timestamp(), row
        assert row.last_seen.timestamp() <= at[pid][ends[pid]] + stale, row


EVENTS_BACK = {event: action for action, event in EVENTS.items()}


def between(r: Read, since: float, until: float) -> bool:
    """Whether ``r`` was sent after ``since`` and answered before ``until``."""
    return since < r.sent and r.answered < until
