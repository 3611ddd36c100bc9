"""Who may do what over HTTP: every endpoint of the OpenAPI document for every role, allowed or
denied; release approval; and API tokens with their scopes, expiry and revocation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from grayrelease_core import GrayRelease as Engine
from grayrelease_core import ManualClock
from grayrelease_core.store import LogQuery

from .conftest import spec_body
from .test_http_api import API, make_app

ROLES = ("viewer", "editor", "releaser", "admin", "nobody")
TOKENS = {f"{role}-token-0123456789": role for role in ROLES} | {"root-token-0123456789": "root"}
APP, ENV = "demo-app", "test"
Call = Callable[[FlaskClient, dict[str, str], "World"], TestResponse]


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {role}-token-0123456789"}


class World:
    """Plans in the states an endpoint needs, made by root, fresh for each call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0

    def draft(self, env: str = ENV) -> str:
        self.count += 1
        key = f"k{self.count}"
        body = spec_body(appName=APP, environment=env, configKeys=[key], grayValues={key: "v"})
        return self.engine.create_plan(body, actor="root").id

    def active(self, percentage: bool = False) -> str:
        if percentage:
            self.count += 1
            key = f"k{self.count}"
            body = spec_body(
                appName=APP,
                environment=ENV,
                configKeys=[key],
                grayValues={key: "v"},
                grayStrategy="PERCENTAGE",
                grayRules={"percentage": 10},
            )
            plan_id = self.engine.create_plan(body, actor="root").id
        else:
            plan_id = self.draft()
        return self.engine.start(plan_id, actor="root").id

    def paused(self) -> str:
        return self.engine.pause(self.active(), actor="root").id


ANY_ACTOR = set(ROLES)
READERS = {"viewer", "editor", "releaser", "admin"}
EDITORS = {"editor", "admin"}
RELEASERS = {"releaser", "admin"}
ADMINS = {"admin"}


MATRIX: dict[str, tuple[set[str], Call]] = {
    "GET /openapi.json": (ANY_ACTOR, lambda h, a, w: h.get(f"{API}/openapi.json", headers=a)),
    "GET /config/value": (
        ANY_ACTOR,
        lambda h, a, w: h.get(
            f"{API}/config/value?appName={APP}&environment={ENV}&configKey=k&instanceId=i",
            headers=a,
        ),
    ),
    "GET /config/current": (
        READERS,
        lambda h, a, w: h.get(
            f"{API}/config/current?appName={APP}&environment={ENV}&configKey=k&configKey=j",
            headers=a,
        ),
    ),
    "POST /plan": (
        EDITORS,
        lambda h, a, w: h.post(
            f"{API}/plan",
            json=spec_body(appName=APP, environment=ENV, configKeys=[f"n{w.count}"], grayValues={}),
            headers=a,
        ),
    ),
    "GET /plans": (
        READERS,
        lambda h, a, w: h.get(f"{API}/plans?appName={APP}&environment={ENV}", headers=a),
    ),
    "GET /plan/{planId}": (READERS, lambda h, a, w: h.get(f"{API}/plan/{w.draft()}", headers=a)),
    "PUT /plan/{planId}": (
        EDITORS,
        lambda h, a, w: h.put(f"{API}/plan/{w.draft()}", json={"description": "d"}, headers=a),
    ),
    "DELETE /plan/{planId}": (
        EDITORS,
        lambda h, a, w: h.delete(f"{API}/plan/{w.draft()}", headers=a),
    ),
    "POST /plan/{planId}/start": (
        RELEASERS,
        lambda h, a, w: h.post(f"{API}/plan/{w.draft()}/start", headers=a),
    ),
    "POST /plan/{planId}/pause": (
        RELEASERS,
        lambda h, a, w: h.post(f"{API}/plan/{w.active()}/pause", headers=a),
    ),
    "POST /plan/{planId}/resume": (
        RELEASERS,
        lambda h, a, w: h.post(f"{API}/plan/{w.paused()}/resume", headers=a),
    ),
    "POST /plan/{planId}/complete": (
        RELEASERS,
        lambda h, a, w: h.post(f"{API}/plan/{w.active()}/complete", headers=a),
    ),
    "POST /plan/{planId}/rollback": (
        RELEASERS,
        lambda h, a, w: h.post(f"{API}/plan/{w.active()}/rollback", headers=a),
    ),
    "POST /plan/{planId}/promote": (
        RELEASERS,
        lambda h, a, w: h.post(
            f"{API}/plan/{w.active(percentage=True)}/promote", json={"full": True}, headers=a
        ),
    ),
    "POST /plan/{planId}/approve": (
        RELEASERS,
        lambda h, a, w: h.post(f"{API}/plan/{w.draft()}/approve", headers=a),
    ),
    "POST /plan/{planId}/reject": (
        RELEASERS,
        lambda h, a, w: h.post(f"{API}/plan/{w.draft()}/reject", json={"reason": "no"}, headers=a),
    ),
    "POST /plan/{planId}/metrics": (
        EDITORS | RELEASERS,
        lambda h, a, w: h.post(
            f"{API}/plan/{w.active()}/metrics",
            json={"samples": [{"instanceId": "i", "metric": "m", "value": 1}]},
            headers=a,
        ),
    ),
    "GET /plan/{planId}/metrics": (
        READERS,
        lambda h, a, w: h.get(f"{API}/plan/{w.active()}/metrics", headers=a),
    ),
    "GET /plan/{planId}/logs": (
        READERS,
        lambda h, a, w: h.get(f"{API}/plan/{w.draft()}/logs", headers=a),
    ),
    "GET /plan/{planId}/instances": (
        READERS,
        lambda h, a, w: h.get(f"{API}/plan/{w.draft()}/instances", headers=a),
    ),
    "GET /logs": (
        READERS,
        lambda h, a, w: h.get(f"{API}/logs?appName={APP}&environment={ENV}", headers=a),
    ),
    "GET /audit/verify": (ADMINS, lambda h, a, w: h.get(f"{API}/audit/verify", headers=a)),
    "GET /notifications": (
        READERS,
        lambda h, a, w: h.get(f"{API}/notifications?planId={w.active()}", headers=a),
    ),
    "GET /messages": (ANY_ACTOR, lambda h, a, w: h.get(f"{API}/messages", headers=a)),
    "GET /messages/unread-count": (
        ANY_ACTOR,
        lambda h, a, w: h.get(f"{API}/messages/unread-count", headers=a),
    ),
    "POST /messages/{messageId}/read": (
        set(),  # one's own messages only: nobody else's, whatever the role
        lambda h, a, w: h.post(f"{API}/messages/{root_message(w)}/read", headers=a),
    ),
    "GET /grants": (ADMINS, lambda h, a, w: h.get(f"{API}/grants", headers=a)),
    "POST /grants": (
        ADMINS,
        lambda h, a, w: h.post(
            f"{API}/grants",
            json={"actor": f"new{w.count}", "role": "viewer", "appName": APP, "environment": ENV},
            headers=a,
        ),
    ),
    "DELETE /grants/{grantId}": (
        ADMINS,
        lambda h, a, w: h.delete(f"{API}/grants/{fresh_grant(w)}", headers=a),
    ),
    "GET /tokens": (ANY_ACTOR, lambda h, a, w: h.get(f"{API}/tokens", headers=a)),
    "POST /tokens": (
        ANY_ACTOR,
        lambda h, a, w: h.post(f"{API}/tokens", json={"scope": "read"}, headers=a),
    ),
    "DELETE /tokens/{tokenId}": (
        ADMINS,  # another's token; one's own is tested below
        lambda h, a, w: h.delete(f"{API}/tokens/{root_token(w)}", headers=a),
    ),
}


def fresh_grant(world: World) -> int:
    world.count += 1
    grant = world.engine.grant(
        actor="root", grantee=f"g{world.count}", role="viewer", app_name=APP, environment=ENV
    )
    assert grant.id is not None
    return grant.id


def root_token(world: World) -> str:
    return world.engine.create_token(actor="root", scope="read")[1].id


def root_message(world: World) -> int:
    plan_id = world.active()
    world.engine.deliver()
    message = world.engine.messages("root").items[0]
    assert message.plan_id == plan_id
    assert message.id is not None
    return message.id


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    app = make_app(
        tmp_path,
        clock,
        GRAYRELEASE_TOKENS=TOKENS,
        GRAYRELEASE_TICK_INTERVAL=0,
        GRAYRELEASE_DELIVERY_INTERVAL=0,
        GRAYRELEASE_APPROVAL_ENVIRONMENTS=["prod"],
        GRAYRELEASE_SETTINGS={"auth": {"admins": ["root"]}},
    )
    engine: Engine = app.extensions["grayrelease"].state(app).engine
    for role in ("viewer", "editor", "releaser"):
        engine.grant(actor="root", grantee=role, role=role, app_name=APP, environment="*")
    engine.grant(actor="root", grantee="admin", role="admin", app_name="*", environment="*")
    yield app
    app.extensions["grayrelease"].close(app)


@pytest.fixture
def engine(app: Flask) -> Engine:
    found: Engine = app.extensions["grayrelease"].state(app).engine
    return found


def test_the_matrix_covers_every_operation_of_the_api(app: Flask) -> None:
    document = app.test_client().get(f"{API}/openapi.json").json
    assert document is not None
    operations = {
        f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
    }
    # Logging in and out is for anyone with a token: tests/test_session.py.
    sessions = {"POST /session", "GET /session", "DELETE /session"}
    assert operations == set(MATRIX) | sessions


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_every_endpoint_for_every_role(
    app: Flask, engine: Engine, operation: str, role: str
) -> None:
    allowed, call = MATRIX[operation]
    answer = call(app.test_client(), auth(role), World(engine))
    if role in allowed:
        assert answer.status_code < 300, (answer.status_code, answer.json)
        return
    if operation == "POST /messages/{messageId}/read":
        assert answer.status_code == 404  # not theirs: as if it did not exist
        return
    assert answer.status_code == 403, (answer.status_code, answer.json)
    assert answer.json is not None
    error = answer.json["error"]
    assert error["code"] == "PERMISSION_DENIED"
    assert error["details"]["actor"] == role
    assert error["details"]["missingRoles"]
    assert f"takes the role {' or '.join(error['details']['missingRoles'])}" in error["message"]
    [denial] = engine.find_logs(LogQuery(actions=("DENIED",), actor=role)).items
    assert denial.details is not None
    assert denial.details["source"] == "127.0.0.1"


def test_approval_by_the_author_refused_by_another_releaser_accepted(
    app: Flask, engine: Engine
) -> None:
    http = app.test_client()
    engine.grant(actor="root", grantee="releaser2", role="releaser", app_name="*", environment="*")
    engine.grant(actor="root", grantee="releaser", role="editor", app_name=APP, environment="*")
    created = http.post(
        f"{API}/plan",
        json=spec_body(appName=APP, environment="prod"),
        headers=auth("releaser"),
    )
    assert created.status_code == 201
    assert created.json is not None
    plan_id = created.json["planId"]
    unapproved = http.post(f"{API}/plan/{plan_id}/start", headers=auth("releaser"))
    assert unapproved.status_code == 403
    assert unapproved.json is not None
    assert unapproved.json["error"]["details"]["approval"] == "start"
    own = http.post(f"{API}/plan/{plan_id}/approve", headers=auth("releaser"))
    assert own.status_code == 403
    assert own.json is not None
    assert own.json["error"]["details"]["reason"] == "author"
    engine.grant(actor="root", grantee="releaser2", role="viewer", app_name=APP, environment="*")
    token = engine.create_token(actor="root", owner="releaser2", scope="release")[0]
    other = {"Authorization": f"Bearer {token}"}
    approved = http.post(f"{API}/plan/{plan_id}/approve", json={"reason": "ok"}, headers=other)
    assert approved.status_code == 200
    assert approved.json is not None
    assert (approved.json["decision"], approved.json["stage"]) == ("APPROVED", "start")
    started = http.post(f"{API}/plan/{plan_id}/start", headers=auth("releaser"))
    assert started.status_code == 200
    # An emergency rollback by a releaser with no approval of the completion.
    rolled = http.post(f"{API}/plan/{plan_id}/rollback", json={"reason": "p0"}, headers=other)
    assert rolled.status_code == 200
    assert rolled.json is not None
    assert rolled.json["status"] == "ROLLBACK"


def test_token_scopes_expiry_and_revocation(app: Flask, engine: Engine, clock: ManualClock) -> None:
    http = app.test_client()
    made = http.post(
        f"{API}/tokens", json={"scope": "read", "days": 1, "name": "ci"}, headers=auth("releaser")
    )
    assert made.status_code == 201
    assert made.json is not None
    secret, token_id = made.json["token"], made.json["id"]
    bearer = {"Authorization": f"Bearer {secret}"}
    assert (
        http.get(f"{API}/plans?appName={APP}&environment={ENV}", headers=bearer).status_code == 200
    )
    plan_id = World(engine).draft()
    narrow = http.post(f"{API}/plan/{plan_id}/start", headers=bearer)
    assert narrow.status_code == 403
    assert narrow.json is not None
    assert narrow.json["error"]["details"]["tokenScope"] == "read"
    listed = http.get(f"{API}/tokens", headers=auth("releaser")).json
    assert listed is not None
    assert [t["id"] for t in listed["items"]] == [token_id]
    assert "token" not in listed["items"][0]
    assert secret not in str(listed)
    release = http.post(f"{API}/tokens", json={"scope": "release"}, headers=auth("releaser"))
    assert release.json is not None
    wide = {"Authorization": f"Bearer {release.json['token']}"}
    assert http.post(f"{API}/plan/{plan_id}/start", headers=wide).status_code == 200
    assert http.delete(f"{API}/tokens/{token_id}", headers=auth("releaser")).status_code == 204
    assert http.get(f"{API}/messages", headers=bearer).status_code == 401  # revoked
    clock.advance(timedelta(days=91))
    assert http.get(f"{API}/messages", headers=wide).status_code == 401  # expired
    for bad, field in (
        ({"scope": "root"}, "scope"),
        ({"scope": "read", "days": 0}, "days"),
        ({"scope": "read", "days": 367}, "days"),
        ({"scope": "read", "actor": None}, "actor"),
        ({"days": 3}, "scope"),
        ({"scope": "read", "extra": 1}, "extra"),
    ):
        refused = http.post(f"{API}/tokens", json=bad, headers=auth("editor"))
        assert refused.status_code == 400, bad
        assert refused.json is not None
        assert refused.json["error"]["details"]["field"] == field
