"""The console's session: a login cookie (HttpOnly, SameSite=Lax, Secure over HTTPS) and CSRF
protection on every state-changing request it authenticates."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grayrelease_core import GrayRelease as Engine
from grayrelease_core import ManualClock

from .conftest import spec_body
from .test_http_api import API, TOKEN, make_app

CSRF = "X-CSRF-Token"


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    app = make_app(
        tmp_path,
        clock,
        GRAYRELEASE_TICK_INTERVAL=0,
        GRAYRELEASE_DELIVERY_INTERVAL=0,
        GRAYRELEASE_SESSION_SECRET="a-session-secret-for-tests",
        GRAYRELEASE_SESSION_HOURS=8,
    )
    yield app
    app.extensions["grayrelease"].close(app)


def login(http: FlaskClient, token: str = TOKEN) -> str:
    answer = http.post(f"{API}/session", json={"token": token})
    assert answer.status_code == 201, answer.json
    assert answer.json is not None
    csrf: str = answer.json["csrfToken"]
    return csrf


def test_the_cookie_is_http_only_same_site_lax_and_secure_over_https(app: Flask) -> None:
    plain = app.test_client().post(f"{API}/session", json={"token": TOKEN})
    cookie = plain.headers["Set-Cookie"]
    assert "grayrelease_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    assert plain.json is not None
    assert plain.json["actor"] == "alice"
    secure = app.test_client().post(
        f"{API}/session", json={"token": TOKEN}, base_url="https://config.example.com"
    )
    assert "Secure" in secure.headers["Set-Cookie"]


def test_a_state_change_through_the_cookie_needs_the_csrf_token(app: Flask) -> None:
    http = app.test_client()
    csrf = login(http)
    assert http.get(f"{API}/messages").status_code == 200  # reads need no CSRF token
    body = spec_body()
    forged = http.post(f"{API}/plan", json=body)
    assert forged.status_code == 403
    assert forged.json is not None
    assert forged.json["error"]["details"]["reason"] == "csrf"
    wrong = http.post(f"{API}/plan", json=body, headers={CSRF: csrf + "x"})
    assert wrong.status_code == 403
    made = http.post(f"{API}/plan", json=body, headers={CSRF: csrf})
    assert made.status_code == 201
    assert made.json is not None
    assert made.json["createdBy"] == "alice"
    again = http.get(f"{API}/session").json
    assert again == {"actor": "alice", "csrfToken": csrf}
    # A bearer token is not a browser's: no CSRF token needed.
    bearer = app.test_client().post(
        f"{API}/plan/{made.json['planId']}/start", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert bearer.status_code == 200


def test_logout_bad_tokens_and_tampered_cookies(app: Flask, clock: ManualClock) -> None:
    http = app.test_client()
    assert http.post(f"{API}/session", json={"token": "nope"}).status_code == 401
    refused = http.post(f"{API}/session", json={"token": TOKEN, "remember": True})
    assert refused.status_code == 400
    assert http.get(f"{API}/session").status_code == 401
    login(http)
    assert http.delete(f"{API}/session").status_code == 204
    assert http.get(f"{API}/messages").status_code == 401
    login(http)
    cookie = http.get_cookie("grayrelease_session")
    assert cookie is not None
    http.set_cookie("grayrelease_session", cookie.value[:-2] + "xx")
    assert http.get(f"{API}/messages").status_code == 401
    login(http)
    clock.advance(timedelta(hours=8, seconds=1))  # GRAYRELEASE_SESSION_HOURS
    assert http.get(f"{API}/messages").status_code == 401


def test_a_session_of_a_stored_token_ends_with_it_and_keeps_its_scope(app: Flask) -> None:
    engine: Engine = app.extensions["grayrelease"].state(app).engine
    secret, token = engine.create_token(actor="alice", scope="read")
    http = app.test_client()
    csrf = login(http, secret)
    narrow = http.post(f"{API}/plan", json=spec_body(), headers={CSRF: csrf})
    assert narrow.status_code == 403
    assert narrow.json is not None
    assert narrow.json["error"]["details"]["tokenScope"] == "read"
    assert http.get(f"{API}/messages").status_code == 200
    engine.revoke_token(token.id, actor="alice")
    assert http.get(f"{API}/messages").status_code == 401
