"""Attacks on who a request is (issue 16, points 5, 8 and 9b), each test named after the
invariant it protects: per-request identity does not outlive its request, a login cannot be
forged from another site, a logout ends every copy of the cookie, wrong tokens are slowed
down, and an oversized body is refused without being read."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from grayrelease_adapters.flask.demo import create_demo_app
from grayrelease_adapters.flask.throttle import LoginThrottle

from grayrelease_core import GrayRelease as Engine
from grayrelease_core import ManualClock

from .conftest import spec_body
from .console_browser import TIMEOUT, chromium, served
from .databases import fresh_database
from .test_http_api import API, TOKEN, make_app
from .test_processes import TOKEN as ADMIN_TOKEN
from .test_processes import Server

CSRF = "X-CSRF-Token"
SECRET = "a-session-secret-for-tests"
LIMIT = 64 * 1024
"""``GRAYRELEASE_MAX_BODY_BYTES`` of the apps built here."""
DB_KINDS = ("sqlite", "postgresql")


@pytest.fixture(params=DB_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def host_app(database_url: str, clock: ManualClock, **config: Any) -> Flask:
    return make_app(
        Path("."),
        clock,
        GRAYRELEASE_DATABASE_URL=database_url,
        GRAYRELEASE_TICK_INTERVAL=0,
        GRAYRELEASE_DELIVERY_INTERVAL=0,
        GRAYRELEASE_SESSION_SECRET=SECRET,
        GRAYRELEASE_MAX_BODY_BYTES=LIMIT,
        **config,
    )


@contextmanager
def apps(database_url: str, clock: ManualClock, count: int = 1) -> Iterator[list[Flask]]:
    """``count`` apps on one database: as many processes, each with its own engine."""
    made = [host_app(database_url, clock) for _ in range(count)]
    try:
        yield made
    finally:
        for app in made:
            app.extensions["grayrelease"].close(app)


def login(http: FlaskClient, token: str = TOKEN, **kwargs: Any) -> Any:
    return http.post(f"{API}/session", json={"token": token}, **kwargs)


def request_json(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    """One HTTP request over a real socket: the status, the JSON answer and the headers."""
    data = json.dumps(body).encode() if body is not None else None
    sent = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        sent.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(sent, timeout=30) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None, answer.headers
    except urllib.error.HTTPError as error:
        with error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None, error.headers


# --- 5: per-request identity ---------------------------------------------------------------


def test_a_tokens_scope_ends_with_its_request_on_a_one_thread_server(
    database_url: str, tmp_path: Path
) -> None:
    """One waitress thread serves every request in turn: a read-only token's scope, set for
    the demo's config API, must not be the next caller's (the admin's bearer token, or the
    admin's console session), whichever way its request ended."""
    server = Server(database_url, tmp_path / "server.log", ["--threads", "1"])
    try:
        server.wait_ready()
        base = f"http://127.0.0.1:{server.port}"
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        status, made, _ = request_json(
            f"{base + API}/tokens", "POST", {"scope": "read", "days": 1}, admin
        )
        assert status == 201, made
        reader = {"Authorization": f"Bearer {made['token']}"}
        item = {
            "appName": "demo-app",
            "environment": "prod",
            "groupName": "database",
            "configKey": "database.url",
            "value": "jdbc:mysql://db-old:3306/demo",
        }
        status, session, headers = request_json(
            f"{base + API}/session", "POST", {"token": ADMIN_TOKEN}
        )
        assert status == 201, session
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        console = {"Cookie": cookie, CSRF: session["csrfToken"]}
        for n, reader_call in enumerate(
            [
                # Refused (a read token may not write config: test_attacks.py), after the
                # demo's config API identified the token and set its scope.
                ("PUT", f"{base}/api/config/item", item, 403),
                ("PUT", f"{base}/api/config/item", {"nope": 1}, 400),  # after identifying
                ("GET", f"{base + API}/messages", None, 200),  # the REST API's own path
            ]
        ):
            method, url, body, expected = reader_call
            status, answer, _ = request_json(url, method, body, reader)
            assert status == expected, answer
            for caller in (admin, console):
                status, plan, _ = request_json(
                    f"{base + API}/plan", "POST", spec_body(planName=f"p{n}"), caller
                )
                assert status == 201, plan
                request_json(f"{base + API}/plan/{plan['planId']}", "DELETE", None, caller)
    finally:
        server.stop()


# --- 8: login CSRF ---------------------------------------------------------------------------

ATTACKER = "mallory-token-0123456789abcdef"
"""The attacker's own (valid) token. A ``text/plain`` form sends ``name=value``: with the
field name ``{"token":"`` the ``=`` lands inside a first ``token`` member, and the value
closes it and adds a second one, which JSON parsers let win."""

FORM = """<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="{action}">
<input type="hidden" name='{{"token":"' value='","token":"{value}"}}'>
</form>
<script>document.getElementById("f").submit();</script>
</body></html>"""


@contextmanager
def attacker_site(page_html: str) -> Iterator[str]:
    """Another origin on loopback (another port) serving the attacker's page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_cross_site_form_cannot_replace_the_console_session(
    tmp_path: Path, clock: ManualClock
) -> None:
    """In Chromium: the victim is logged in as alice; a page on another port auto-submits a
    text/plain form at ``POST /session`` with the attacker's token; the victim is still
    alice (the login is refused, the cookie untouched)."""
    url = f"sqlite:///{tmp_path / 'gray.db'}"
    app = host_app(url, clock, GRAYRELEASE_TOKENS={TOKEN: "alice", ATTACKER: "mallory"})
    try:
        with served(app) as victim, chromium() as browser:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{victim}{API}/openapi.json")
            who = page.evaluate(
                """async (token) => {
                    const r = await fetch("/api/gray-release/session", {method: "POST",
                        headers: {"Content-Type": "application/json"},
                        body: JSON.stringify({token})});
                    return (await r.json()).actor;
                }""",
                TOKEN,
            )
            assert who == "alice"
            action = f"{victim}{API}/session"
            with attacker_site(FORM.format(action=action, value=ATTACKER)) as evil:
                with page.expect_navigation(url=action, timeout=TIMEOUT):
                    page.goto(evil)
                refused = page.evaluate("document.body.innerText")
            page.goto(f"{victim}{API}/openapi.json")
            still = page.evaluate(
                """async () => (await (await fetch("/api/gray-release/session")).json())"""
            )
            assert still.get("actor") == "alice", (still, refused)
            assert json.loads(refused)["error"]["code"] in (
                "PERMISSION_DENIED",
                "UNSUPPORTED_MEDIA_TYPE",
            )
            context.close()
    finally:
        app.extensions["grayrelease"].close(app)


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, 403, "cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, 403, "cross-site"),  # another port is same-site
        ({"Origin": "http://127.0.0.1:9"}, 403, "cross-origin"),
        ({"Origin": "null"}, 403, "cross-origin"),
    ],
)
def test_a_login_from_another_origin_is_refused(
    tmp_path: Path, clock: ManualClock, headers: dict[str, str], status: int, reason: str
) -> None:
    with apps(f"sqlite:///{tmp_path / 'gray.db'}", clock) as (app,):
        http = app.test_client()
        refused = login(http, headers=headers)
        assert refused.status_code == status, refused.json
        assert refused.json["error"]["details"]["reason"] == reason
        assert http.get_cookie("grayrelease_session") is None


def test_a_login_body_must_be_declared_json(tmp_path: Path, clock: ManualClock) -> None:
    with apps(f"sqlite:///{tmp_path / 'gray.db'}", clock) as (app,):
        http = app.test_client()
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            refused = http.post(
                f"{API}/session",
                data=json.dumps({"token": TOKEN}),
                headers={"Content-Type": content_type} if content_type else {},
            )
            assert refused.status_code == 415, refused.json
            assert refused.json is not None
            assert refused.json["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        # The console's own page, the address bar, and a script with no browser headers pass.
        base = "http://localhost"
        for headers in (
            {"Origin": base, "Sec-Fetch-Site": "same-origin"},
            {"Sec-Fetch-Site": "none"},
            {},
        ):
            assert login(http, headers=headers).status_code == 201


# --- 8: sessions end on the server -----------------------------------------------------------


def test_a_logged_out_cookie_is_refused_in_every_process(
    database_url: str, clock: ManualClock
) -> None:
    with apps(database_url, clock, count=2) as (one, other):
        browser = one.test_client()
        answer = login(browser)
        assert answer.status_code == 201
        csrf = answer.json["csrfToken"]
        cookie = browser.get_cookie("grayrelease_session")
        assert cookie is not None
        copied = cookie.value
        thief = other.test_client()
        thief.set_cookie("grayrelease_session", copied)
        assert thief.get(f"{API}/session").status_code == 200  # one session, both processes
        assert browser.delete(f"{API}/session").status_code == 204
        for app in (one, other):
            replay = app.test_client()
            replay.set_cookie("grayrelease_session", copied)
            assert replay.get(f"{API}/session").status_code == 401
            assert replay.get(f"{API}/messages").status_code == 401
            forged = replay.post(f"{API}/plan", json=spec_body(), headers={CSRF: csrf})
            assert forged.status_code == 401
        # Logging in again makes a new session; the old cookie stays dead.
        assert login(browser).status_code == 201
        assert browser.get(f"{API}/messages").status_code == 200
        assert thief.get(f"{API}/messages").status_code == 401


# --- 8: throttled logins -------------------------------------------------------------------


def refused_logins(app: Flask) -> list[Any]:
    engine: Engine = app.extensions["grayrelease"].state(app).engine
    return list(engine.find_logs(actions=("LOGIN_REFUSED",), page_size=200).items)


def test_wrong_login_tokens_are_throttled_per_source_with_growing_waits(
    database_url: str, clock: ManualClock
) -> None:
    with apps(database_url, clock) as (app,):
        http = app.test_client()
        attacker = {"REMOTE_ADDR": "203.0.113.7"}
        answers = [
            login(http, f"wrong-token-{n:04d}", environ_base=attacker).status_code
            for n in range(300)
        ]
        assert answers[:5] == [401] * 5
        assert set(answers[5:]) == {429}
        right = login(http, environ_base=attacker)
        assert right.status_code == 429  # the right token waits its turn too
        assert right.headers["Retry-After"] == "1"
        assert right.json["error"]["code"] == "TOO_MANY_REQUESTS"
        assert right.json["error"]["details"]["retryAfter"] == 1
        # Another address is not slowed by this one.
        assert login(http, environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 201
        # Each further failure doubles the wait.
        for wait in (1, 2, 4, 8):
            clock.advance(timedelta(seconds=wait))
            assert login(http, "wrong", environ_base=attacker).status_code == 401
            refused = login(http, environ_base=attacker)
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == str(wait * 2)
        clock.advance(timedelta(seconds=16))
        assert login(http, environ_base=attacker).status_code == 201
        # A success clears the count: five free failures again.
        assert [login(http, "wrong", environ_base=attacker).status_code for _ in range(6)] == [
            401
        ] * 5 + [429]
        rows = refused_logins(app)
        sources = {row.details["source"] for row in rows}
        assert sources == {"203.0.113.7"}
        failures = [row for row in rows if "retryAfter" not in row.details]
        throttled = [row for row in rows if "retryAfter" in row.details]
        assert len(failures) == 5 + 4 + 5  # every wrong token checked is a row
        assert len(throttled) == 1 + 4 + 1  # one per wait, not one per refused try


def test_guesses_sent_at_once_are_counted_before_any_is_checked(clock: ManualClock) -> None:
    """Invariant: however many tries arrive together, no more than the free failures reach
    the token check before the first wait. (Checking the wait and counting the failure in
    two steps let a parallel burst through whole.)"""
    throttle = LoginThrottle(clock)
    admitted = 0
    barrier = threading.Barrier(20)

    def guess() -> None:
        nonlocal admitted
        barrier.wait()
        if throttle.attempt("203.0.113.9") is None:
            with lock:
                admitted += 1
        # no outcome yet: the tries are all in flight at once

    lock = threading.Lock()
    workers = [threading.Thread(target=guess) for _ in range(20)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert admitted == 5
    throttle.succeeded("203.0.113.9")  # a right token among them clears the count
    assert throttle.attempt("203.0.113.9") is None


def test_the_login_wait_is_capped_and_forgotten_after_an_hour(
    tmp_path: Path, clock: ManualClock
) -> None:
    with apps(f"sqlite:///{tmp_path / 'gray.db'}", clock) as (app,):
        http = app.test_client()
        for _ in range(20):
            login(http, "wrong")
            clock.advance(timedelta(minutes=15))
        capped = login(http, "wrong")
        assert capped.status_code == 401
        refused = login(http)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == str(15 * 60)
        clock.advance(timedelta(hours=1))
        assert login(http).status_code == 201


# --- 9b: body size ---------------------------------------------------------------------------


def raw_exchange(port: int, head: str, body: bytes, *, timeout: float = 10) -> bytes:
    """Send ``head`` and ``body`` on a socket and read what the server answers until it
    closes or ``timeout`` passes (a server still waiting for the body answers nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + body)
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except TimeoutError:
            pass
    return received


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def parse(raw: bytes) -> tuple[int, Any]:
    assert raw, "no answer: the server is still reading the body"
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(f"sqlite:///{tmp_path / 'gray.db'}", tmp_path / "server.log", [])
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


ENDPOINTS = [
    ("POST", f"{API}/plan"),
    ("POST", f"{API}/session"),
    ("PUT", "/api/config/item"),
    ("GET", f"{API}/apollo/configs/demo-app/default/application"),
    ("GET", f"{API}/config/value"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_body_over_the_limit_is_refused_by_its_length_before_it_is_read(
    demo_server: Server, method: str, path: str
) -> None:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
        "Content-Length: 200000000\r\n\r\n"
    )
    status, answer = parse(raw_exchange(demo_server.port, head, b'{"planName": "x'))
    assert status == 413
    assert answer["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert answer["error"]["details"]["limit"] == 1024 * 1024


def chunked(size: int, piece: int = 16 * 1024) -> bytes:
    out = b""
    left = size
    while left > 0:
        n = min(piece, left)
        out += f"{n:x}\r\n".encode() + b"x" * n + b"\r\n"
        left -= n
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize("over", [100, 8 * 1024 * 1024])
def test_a_chunked_body_is_not_read_past_the_limit(demo_server: Server, over: int) -> None:
    """Just over the limit the app stops reading it; far over, the server does."""
    head = (
        f"PUT /api/config/item HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    limit = 1024 * 1024
    sent = b""
    with socket.create_connection(("127.0.0.1", demo_server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        body = chunked(limit + over)
        try:
            for start in range(0, len(body), 65536):
                sock.sendall(body[start : start + 65536])
                sent += body[start : start + 65536]
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the rest was sent
        received = b""
        try:
            while not (b"\r\n\r\n" in received and _complete(received)):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    status, answer = parse(received)
    assert status == 413, answer
    assert answer["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert answer["error"]["details"]["limit"] == limit


@pytest.mark.parametrize(
    ("method", "path"), [*ENDPOINTS, ("DELETE", f"{API}/session"), ("GET", f"{API}/plans")]
)
def test_every_endpoint_refuses_a_body_over_the_limit_by_its_length(
    tmp_path: Path, method: str, path: str
) -> None:
    """In the app itself (any WSGI server): the length is checked before anything reads."""
    app = create_demo_app(f"sqlite:///{tmp_path / 'gray.db'}", TOKEN)
    try:
        refused = app.test_client().open(
            path,
            method=method,
            data=b"{}",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            environ_overrides={"CONTENT_LENGTH": str(1024 * 1024 + 1)},
        )
        assert refused.status_code == 413, refused.json
        assert refused.json is not None
        assert refused.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert refused.json["error"]["details"] == {"field": "body", "limit": 1024 * 1024}
    finally:
        app.extensions["grayrelease"].close(app)
