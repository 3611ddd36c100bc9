"""``grayrelease serve`` as ``make run`` starts it: the backend it is told, the Apollo endpoint
on it, a busy port in one line, and a stop that answers held polls and flushes."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .apollo_polls import open_polls, poll_target, request
from .demo_server import demo_server

APOLLO = "/api/gray-release/apollo/prod"


@contextmanager
def serving(tmp_path: Path, *options: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``grayrelease serve --load-examples`` on a scratch SQLite file: its process and port."""
    with demo_server(f"sqlite:///{tmp_path / 'gray.db'}", *options) as served:
        yield served.process, served.port


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_demo_on_the_memory_backend_serves_apollo_clients(tmp_path: Path) -> None:
    with serving(tmp_path, "--backend", "memory") as (_process, port):
        status, body = get(port, f"{APOLLO}/configs/demo-app/default/database?ip=10.0.0.1")
        assert status == 200, body
        assert json.loads(body)["configurations"]["database.url"].startswith("jdbc:mysql://")
    # Nothing was written to the sql backend's table: the values lived in memory.
    import sqlite3

    tables = {
        row[0]
        for row in sqlite3.connect(tmp_path / "gray.db").execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert "gray_config_value" not in tables


def test_the_demo_on_the_sql_backend_serves_apollo_clients(tmp_path: Path) -> None:
    with serving(tmp_path) as (_process, port):
        status, body = get(port, f"{APOLLO}/configs/demo-app/default/database?ip=10.0.0.1")
        assert status == 200, body  # was a 500: the sql backend could not list a namespace


def test_a_busy_port_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        finished = subprocess.run(
            [
                sys.executable,
                "-m",
                "grayrelease_adapters.flask.cli",
                "--database-url",
                f"sqlite:///{tmp_path / 'gray.db'}",
                "serve",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert finished.returncode == 1
    lines = [line for line in finished.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, finished.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "--port" in lines[0]
    assert "Traceback" not in finished.stderr + finished.stdout


def test_sigterm_answers_held_polls_and_flushes(tmp_path: Path) -> None:
    with serving(tmp_path) as (process, port):
        _status, body = get(port, poll_target(APOLLO, -1))
        known = json.loads(body)[0]["notificationId"]

        async def held_then_stopped() -> list[int]:
            polls = await open_polls(port, poll_target(APOLLO, known), 50, batch=50)
            await asyncio.sleep(1.0)  # every poll checked and held (nothing changes)
            assert not any(task.done() for task in polls)
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            answers = await asyncio.wait_for(asyncio.gather(*polls), 15)
            assert time.monotonic() - began < 10  # not the 60 s hold
            return [answer.status for answer in answers]

        statuses = asyncio.run(held_then_stopped())
        output, _ = process.communicate(timeout=30)
    assert statuses == [304] * 50
    assert process.returncode == 0
    assert "buffered instance hits written" in output


def test_reads_answer_while_polls_are_held(tmp_path: Path) -> None:
    """Eight held polls froze the waitress server of eight threads: here sixteen are held."""
    with serving(tmp_path, "--backend", "memory") as (_process, port):
        _status, body = get(port, poll_target(APOLLO, -1))
        known = json.loads(body)[0]["notificationId"]

        async def reads_beside_polls() -> float:
            polls = await open_polls(port, poll_target(APOLLO, known), 16, batch=16)
            await asyncio.sleep(0.5)
            assert not any(task.done() for task in polls)  # held, not answered
            began = time.monotonic()
            answer = await request(
                port,
                "/api/gray-release/config/value?appName=demo-app&environment=prod"
                "&groupName=database&configKey=database.url&instanceId=r1",
                timeout=10,
            )
            assert answer.status == 200
            for task in polls:
                task.cancel()
            return time.monotonic() - began

        # Under a server of threads the read would wait out a 60 s hold.
        assert asyncio.run(reads_beside_polls()) < 10.0


def test_invariant_a_local_caller_cannot_name_its_address_in_a_header(tmp_path: Path) -> None:
    """uvicorn's default would take X-Forwarded-For from any local caller as its address;
    without GRAYRELEASE_TRUSTED_PROXIES the header is nobody's word."""
    with demo_server(f"sqlite:///{tmp_path / 'gray.db'}") as served:
        port = served.port
        headers = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
        plan = {
            "planName": "ip gray",
            "appName": "demo-app",
            "environment": "prod",
            "groupName": "database",
            "configKeys": ["database.url"],
            "grayStrategy": "IP_WHITELIST",
            "grayRules": {"ipWhitelist": ["192.168.1.100"]},
            "grayValues": {"database.url": "jdbc:mysql://db-new:3306/demo"},
        }

        def post(path: str, body: object) -> dict[str, object]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/gray-release{path}",
                data=json.dumps(body).encode(),
                method="POST",
                headers=headers,
            )
            with urllib.request.urlopen(req, timeout=10) as answer:
                result: dict[str, object] = json.loads(answer.read())
                return result

        plan_id = post("/plan", plan)["planId"]
        post(f"/plan/{plan_id}/start", {})
        read = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/gray-release/config/value?appName=demo-app"
            "&environment=prod&groupName=database&configKey=database.url&instanceId=r1",
            headers={"X-Forwarded-For": "192.168.1.100"},
        )
        with urllib.request.urlopen(read, timeout=10) as answer:
            assert json.loads(answer.read())["gray"] is False
