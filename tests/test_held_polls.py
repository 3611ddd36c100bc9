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
        self.asgi.watcher.release()
        self.server.should_exit = True
        self.thread.join(15)
        self.listener.close()


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
                served.asgi.watcher.release()  # what the server does on SIGTERM
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
