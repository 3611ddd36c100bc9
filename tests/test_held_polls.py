"""Held Apollo polls take no thread: a few hundred open polls on a server of two threads, and
config reads still answer at once; a plan start answers them all; stopping answers the rest.

The server is the one ``grayrelease serve`` runs (uvicorn and
:mod:`grayrelease_adapters.flask.asgi`), here on a thread of the test. ``make bench-polls``
measures the same at 10,000 polls.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from flask import Flask
from grayrelease_adapters.flask.asgi import HeldPollApp, create_asgi_app

from grayrelease_core import ManualClock

from .apollo_polls import Answer, open_polls, poll_target, request
from .test_apollo_endpoint import APOLLO, PLAN, apollo_app, start
from .test_http_api import API

POLLS = 300
READ = (
    f"{API}/config/value?appName=demo-app&environment=prod&groupName=database"
    "&configKey=database.url&instanceId=reader"
)


class Served:
    """``app`` under uvicorn on a free loopback port, with ``threads`` worker threads."""

    def __init__(self, app: Flask, threads: int) -> None:
        self.asgi: HeldPollApp = create_asgi_app(app, threads=threads)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(2048)
        self.port = self.listener.getsockname()[1]
        config = uvicorn.Config(self.asgi, lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True
        )

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.asgi.watcher.release_soon()
        self.server.should_exit = True
        self.thread.join(15)
        self.listener.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    app = apollo_app(tmp_path, clock, GRAYRELEASE_APOLLO_HOLD=30.0)
    yield app
    app.extensions["grayrelease"].close(app)


def known_id(port: int) -> int:
    first = asyncio.run(request(port, poll_target(APOLLO, -1)))
    assert first.status == 200, first
    number: int = json.loads(first.body)[0]["notificationId"]
    return number


def wait_held(served: Served, count: int) -> None:
    deadline = time.monotonic() + 20
    while served.asgi.watcher.held < count:
        assert time.monotonic() < deadline, f"{served.asgi.watcher.held} of {count} polls held"
        time.sleep(0.05)


def test_invariant_held_polls_take_no_thread_and_reads_go_on(app: Flask) -> None:
    with Served(app, threads=2) as served:
        known = known_id(served.port)

        async def scenario() -> tuple[list[Answer], list[float], float]:
            polls = await open_polls(served.port, poll_target(APOLLO, known), POLLS, batch=100)
            await asyncio.to_thread(wait_held, served, POLLS)
            # Two worker threads, three hundred held polls: reads must not queue behind them.
            waits = []
            for _ in range(20):
                began = time.monotonic()
                answer = await request(served.port, READ, timeout=5)
                assert answer.status == 200, answer
                waits.append(time.monotonic() - began)
            started = time.monotonic()
            await asyncio.to_thread(start, app.test_client(), PLAN)
            answers = await asyncio.wait_for(asyncio.gather(*polls), 30)
            return answers, waits, started

        answers, waits, started = asyncio.run(scenario())
    assert max(waits) < 1.0, waits
    assert [a.status for a in answers] == [200] * POLLS
    # Answered by the watcher within a few of its looks, not at the end of the 30 s hold.
    assert max(a.at for a in answers) - started < 10


def test_a_poll_whose_hold_runs_out_gets_304_and_stopping_answers_the_rest(
    tmp_path: Path, clock: ManualClock
) -> None:
    short = apollo_app(tmp_path, clock, GRAYRELEASE_APOLLO_HOLD=0.5)
    try:
        with Served(short, threads=2) as served:
            known = known_id(served.port)
            began = time.monotonic()
            answer = asyncio.run(request(served.port, poll_target(APOLLO, known)))
            assert answer.status == 304
            assert 0.4 < time.monotonic() - began < 5
    finally:
        short.extensions["grayrelease"].close(short)

    (tmp_path / "long").mkdir()
    long = apollo_app(tmp_path / "long", clock, GRAYRELEASE_APOLLO_HOLD=60.0)
    try:
        served = Served(long, threads=2)
        with served:
            known = known_id(served.port)

            async def held_then_stopped() -> list[Answer]:
                polls = await open_polls(served.port, poll_target(APOLLO, known), 20, batch=20)
                await asyncio.to_thread(wait_held, served, 20)
                served.asgi.watcher.release_soon()  # what the server does on SIGTERM
                return await asyncio.wait_for(asyncio.gather(*polls), 10)

            answers = asyncio.run(held_then_stopped())
        assert [a.status for a in answers] == [304] * 20
    finally:
        long.extensions["grayrelease"].close(long)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"notifications": "{"}, 400),  # refused by the view, never held
        ({"appId": ""}, 400),
    ],
)
def test_a_bad_poll_is_answered_by_the_view_not_held(
    app: Flask, params: dict[str, Any], status: int
) -> None:
    query = {"appId": "demo-app", "cluster": "default", **params}
    with Served(app, threads=2) as served:
        target = f"{APOLLO}/notifications/v2?{urllib.parse.urlencode(query)}"
        answer = asyncio.run(request(served.port, target, timeout=5))
        assert answer.status == status
        assert served.asgi.watcher.held == 0


def test_the_host_asgi_example_in_apollo_md_builds_the_app(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/apollo.md's asgi.py for a host, run against a host app of its own."""
    import sys
    import types

    text = (Path(__file__).resolve().parent.parent / "docs" / "apollo.md").read_text()
    [snippet] = [block for block in text.split("```python\n")[1:] if "create_asgi_app" in block]
    host = types.ModuleType("my_config_center")
    built: list[Flask] = []

    def create_app() -> Flask:
        built.append(apollo_app(tmp_path, clock))
        return built[-1]

    host.create_app = create_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_config_center", host)
    namespace: dict[str, Any] = {}
    exec(snippet.split("```", 1)[0], namespace)
    asgi = namespace["make_asgi"]()
    try:
        assert isinstance(asgi, HeldPollApp)
        assert asgi.flask_app is built[0]
        with Served(built[0], threads=2) as served:
            assert asyncio.run(request(served.port, poll_target(APOLLO, -1))).status == 200
    finally:
        built[0].extensions["grayrelease"].close(built[0])


def test_a_head_poll_is_refused_not_held_in_a_thread(app: Flask) -> None:
    """Flask answers HEAD on a GET route: the view would sleep a worker for the hold."""
    with Served(app, threads=1) as served:
        known = known_id(served.port)

        async def head() -> Answer:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            target = poll_target(APOLLO, known)
            writer.write(f"HEAD {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            raw = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return Answer(int(raw.split(b" ", 2)[1]), b"", time.monotonic())

        assert asyncio.run(head()).status == 405
        assert served.asgi.watcher.held == 0


def test_a_poll_whose_client_hangs_up_is_no_longer_waited_on(app: Flask) -> None:
    with Served(app, threads=2) as served:
        known = known_id(served.port)

        async def hang_up() -> None:
            polls = await open_polls(served.port, poll_target(APOLLO, known), 10, batch=10)
            await asyncio.to_thread(wait_held, served, 10)
            for task in polls:
                task.cancel()  # closes each connection
            await asyncio.gather(*polls, return_exceptions=True)

        asyncio.run(hang_up())
        deadline = time.monotonic() + 10
        while served.asgi.watcher.held:
            assert time.monotonic() < deadline, f"{served.asgi.watcher.held} polls still held"
            time.sleep(0.05)


def test_every_route_is_refused_a_body_over_the_limit_and_never_given_part_of_one(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The host's own routes too: under the layer a body over the limit is a 413, never an
    empty or cut body handed over as if whole."""
    host = apollo_app(tmp_path, clock, GRAYRELEASE_MAX_BODY_BYTES=4096)
    received: list[int] = []

    @host.post("/host/upload")
    def upload() -> str:
        from flask import request as flask_request

        received.append(len(flask_request.get_data()))
        return "ok"

    def exchange(port: int, head: str, body: bytes) -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head.encode() + body)
            raw = b""
            while b"\r\n\r\n" not in raw:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
        return int(raw.split(b" ", 2)[1])

    try:
        with Served(host, threads=2) as served:
            base = "POST /host/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            declared = exchange(served.port, base + "Content-Length: 5000000\r\n\r\n", b"x" * 100)
            body = b"y" * 5000
            chunks = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
            streamed = exchange(served.port, base + "Transfer-Encoding: chunked\r\n\r\n", chunks)
            small = exchange(served.port, base + "Content-Length: 10\r\n\r\n", b"z" * 10)
        assert (declared, streamed, small) == (413, 413, 200)
        assert received == [10]
    finally:
        host.extensions["grayrelease"].close(host)


def test_header_names_with_underscores_are_dropped() -> None:
    from grayrelease_adapters.flask.asgi import _environ

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/x",
        "root_path": "/api-v2",
        "query_string": b"",
        "headers": [
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"x_forwarded_for", b"192.168.1.100"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ],
        "client": ("127.0.0.1", 5000),
    }
    environ = _environ(scope)
    assert environ["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    # A root path is taken off at a segment boundary only.
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/api-v2", "/api/x")
