"""Attacks that once worked, each now a test of the invariant it broke (issue 16), on SQLite
and PostgreSQL. The audit-truncation attacks are in test_attacks_audit.py, the session,
request-state and body-size attacks in test_attacks_sessions.py.

Actors: ``root`` (an admin), ``eddie`` (editor), ``rita`` (releaser), ``bob`` (editor and
releaser), ``carol`` (releaser), ``nobody`` (no grant). ``prod`` is an approval environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grayrelease_core import GrayRelease as Engine
from grayrelease_core import ManualClock, PlanStatus, hookimpl
from grayrelease_core.errors import ConfigurationError, PermissionDenied, ValidationError

from .conftest import spec_body
from .databases import fresh_database
from .test_http_api import API, make_app

ACTORS = ("root", "eddie", "rita", "bob", "carol", "nobody")
TOKENS = {f"{actor}-token-0123456789": actor for actor in ACTORS}
APP = "demo-app"


def auth(actor: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {actor}-token-0123456789"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    with fresh_database(request.param, tmp_path) as url:
        app = make_app(
            tmp_path,
            clock,
            GRAYRELEASE_DATABASE_URL=url,
            GRAYRELEASE_TOKENS=TOKENS,
            GRAYRELEASE_TICK_INTERVAL=0,
            GRAYRELEASE_DELIVERY_INTERVAL=0,
            GRAYRELEASE_APPROVAL_ENVIRONMENTS=["prod"],
            GRAYRELEASE_SETTINGS={"auth": {"admins": ["root"]}},
        )
        engine = engine_of(app)
        grants = {
            "eddie": ["editor"],
            "rita": ["releaser"],
            "bob": ["editor", "releaser"],
            "carol": ["releaser"],
        }
        for actor, roles in grants.items():
            for role in roles:
                engine.grant(actor="root", grantee=actor, role=role, app_name="*", environment="*")
        yield app
        app.extensions["grayrelease"].close(app)


def json_of(response: Any) -> Any:
    """A response's JSON body, for indexing (the test fails on a missing one anyway)."""
    return response.json


def engine_of(app: Flask) -> Engine:
    found: Engine = app.extensions["grayrelease"].state(app).engine
    return found


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


def body(env: str = "test", **overrides: Any) -> dict[str, Any]:
    return spec_body(**{"appName": APP, "environment": env, **overrides})


# --- 1. a token may not mint tokens ------------------------------------------------------------


def test_a_stored_token_cannot_mint_a_wider_or_longer_token(http: FlaskClient) -> None:
    made = http.post(f"{API}/tokens", json={"scope": "read", "days": 1}, headers=auth("rita"))
    assert made.status_code == 201
    read_token = bearer(json_of(made)["token"])
    for asked in ({"scope": "release", "days": 366}, {"scope": "read", "days": 1}):
        minted = http.post(f"{API}/tokens", json=asked, headers=read_token)
        assert minted.status_code == 403, (asked, minted.json)
        assert json_of(minted)["error"]["details"]["reason"] == "token-mints-token"
    # What a token could not mint it could not keep alive past its parent either.
    listed = json_of(http.get(f"{API}/tokens", headers=auth("rita")))
    assert [t["scope"] for t in listed["items"]] == ["read"]


# --- 2. scheduling a start and arming auto-completion are release decisions --------------------


def test_an_editor_cannot_schedule_a_start(
    http: FlaskClient, app: Flask, clock: ManualClock
) -> None:
    start_at = (clock.now() + timedelta(seconds=3)).isoformat()
    created = http.post(f"{API}/plan", json=body(startAt=start_at), headers=auth("eddie"))
    assert created.status_code == 403, created.json
    assert json_of(created)["error"]["details"]["action"] == "schedule-start"
    draft = json_of(http.post(f"{API}/plan", json=body(), headers=auth("eddie")))
    put = http.put(
        f"{API}/plan/{draft['planId']}",
        json={"startAt": start_at},
        headers=auth("eddie"),
    )
    assert put.status_code == 403
    clock.advance(timedelta(seconds=5))
    engine_of(app).tick()
    plan = engine_of(app).get_plan(draft["planId"])
    assert plan.status is PlanStatus.DRAFT


def test_a_write_scope_token_cannot_schedule_a_start(http: FlaskClient, clock: ManualClock) -> None:
    write = json_of(http.post(f"{API}/tokens", json={"scope": "write"}, headers=auth("bob")))
    draft = json_of(http.post(f"{API}/plan", json=body(), headers=auth("eddie")))
    start_at = (clock.now() + timedelta(seconds=3)).isoformat()
    put = http.put(
        f"{API}/plan/{draft['planId']}",
        json={"startAt": start_at},
        headers=bearer(write["token"]),
    )
    assert put.status_code == 403
    assert json_of(put)["error"]["details"]["tokenScope"] == "write"


def test_an_editor_cannot_arm_auto_completion(http: FlaskClient) -> None:
    canary = body(
        grayStrategy="CANARY",
        grayRules={
            "canary": {
                "canaryInstances": ["i-1"],
                "stepPercentage": 100,
                "stepInterval": 1,
                "autoComplete": True,
                "bakeTime": 0,
            }
        },
    )
    created = http.post(f"{API}/plan", json=canary, headers=auth("eddie"))
    assert created.status_code == 403, created.json
    assert json_of(created)["error"]["details"]["action"] == "auto-complete"
    allowed = http.post(f"{API}/plan", json=canary, headers=auth("bob"))
    assert allowed.status_code == 201, allowed.json


def test_the_ticker_starts_a_scheduled_plan_as_its_scheduler_and_rechecks_the_role(
    http: FlaskClient, app: Flask, clock: ManualClock
) -> None:
    engine = engine_of(app)
    start_at = (clock.now() + timedelta(seconds=3)).isoformat()
    first = json_of(http.post(f"{API}/plan", json=body(startAt=start_at), headers=auth("bob")))
    assert first is not None
    elsewhere = body(startAt=start_at, appName="other-app")
    second = json_of(http.post(f"{API}/plan", json=elsewhere, headers=auth("bob")))
    assert second is not None
    # Before the time comes, bob keeps the releaser role only for demo-app.
    everywhere = [g for g in engine.grants(actor="root", grantee="bob") if g.role == "releaser"]
    assert everywhere[0].id is not None
    engine.revoke(everywhere[0].id, actor="root")
    engine.grant(actor="root", grantee="bob", role="releaser", app_name=APP, environment="*")
    clock.advance(timedelta(seconds=5))
    report = engine.tick()
    assert report.started == [first["planId"]]
    started = engine.plan_logs(first["planId"]).items[-1]
    assert (started.action, started.actor) == ("STARTED", "bob")
    assert "ticker" in started.message
    refused = engine.get_plan(second["planId"])
    assert (refused.status, refused.start_at) == (PlanStatus.DRAFT, None)
    assert engine.plan_logs(second["planId"]).items[-1].action == "START_FAILED"


class DenyDecisions:
    """A host policy that lets bob start and complete by hand, but no longer take the
    decisions he left to the ticker (a custom authorize hook tells the actions apart)."""

    @hookimpl(tryfirst=True)
    def grayrelease_authorize(self, actor: str, action: str) -> bool | None:
        if actor == "bob" and action in ("schedule-start", "auto-complete"):
            return False
        return None


def test_the_ticker_rechecks_the_decision_it_carries_out_not_only_the_action(
    http: FlaskClient, app: Flask, clock: ManualClock
) -> None:
    """Invariant: at tick time the ticker checks the very right checked when the decision
    was set (schedule-start, auto-complete), not just start or complete."""
    engine = engine_of(app)
    start_at = (clock.now() + timedelta(seconds=3)).isoformat()
    scheduled = json_of(http.post(f"{API}/plan", json=body(startAt=start_at), headers=auth("bob")))
    canary = body(
        appName="other-app",
        grayStrategy="CANARY",
        grayRules={
            "canary": {
                "canaryInstances": ["i-1"],
                "stepPercentage": 100,
                "stepInterval": 1,
                "autoComplete": True,
                "bakeTime": 0,
            }
        },
    )
    armed = json_of(http.post(f"{API}/plan", json=canary, headers=auth("bob")))
    assert http.post(f"{API}/plan/{armed['planId']}/start", headers=auth("bob")).status_code == 200
    engine.plugin_manager.register(DenyDecisions())
    for _ in range(6):
        clock.advance(timedelta(minutes=2))
        engine.tick()
    refused = engine.get_plan(scheduled["planId"])
    assert (refused.status, refused.start_at) == (PlanStatus.DRAFT, None)
    assert engine.plan_logs(scheduled["planId"]).items[-1].action == "START_FAILED"
    assert engine.get_plan(armed["planId"]).status is not PlanStatus.COMPLETED
    # By hand, bob still may.
    done = http.post(f"{API}/plan/{armed['planId']}/complete", headers=auth("bob"))
    assert done.status_code == 200, done.json


# --- 3. four eyes: nobody who changed the content approves it ----------------------------------


def test_an_editor_of_the_plan_cannot_approve_it(http: FlaskClient, app: Flask) -> None:
    plan = json_of(http.post(f"{API}/plan", json=body(env="prod"), headers=auth("eddie")))
    plan_id = plan["planId"]
    edited = http.put(
        f"{API}/plan/{plan_id}",
        json={"grayValues": {"database.url": "jdbc:mysql://evil:3306/x", "database.username": "x"}},
        headers=auth("bob"),
    )
    assert edited.status_code == 200
    refused = http.post(f"{API}/plan/{plan_id}/approve", json={}, headers=auth("bob"))
    assert refused.status_code == 403, refused.json
    assert json_of(refused)["error"]["details"]["reason"] == "author"
    assert http.post(f"{API}/plan/{plan_id}/start", headers=auth("bob")).status_code == 403
    approved = http.post(f"{API}/plan/{plan_id}/approve", json={}, headers=auth("carol"))
    assert approved.status_code == 200, approved.json
    assert http.post(f"{API}/plan/{plan_id}/start", headers=auth("bob")).status_code == 200
    # The completion too: bob changed the content, so he may not approve it either.
    assert (
        http.post(f"{API}/plan/{plan_id}/approve", json={}, headers=auth("bob")).status_code == 403
    )
    assert http.post(f"{API}/plan/{plan_id}/complete", headers=auth("bob")).status_code == 403
    assert engine_of(app).get_plan(plan_id).status is PlanStatus.ACTIVE


def test_an_early_editor_cannot_approve_after_a_thousand_later_edits(app: Flask) -> None:
    """Invariant: every editor counts, not a first page of edits. (Only the oldest 1000
    UPDATED rows were read: an editor after them was never seen and could approve.)"""
    engine = engine_of(app)
    plan = engine.create_plan(body(env="prod"), actor="eddie")
    for n in range(1000):
        engine.update_plan(plan.id, {"description": f"edit {n}"}, actor="eddie")
    engine.update_plan(plan.id, {"description": "the last word"}, actor="bob")
    with pytest.raises(PermissionDenied) as refused:
        engine.approve(plan.id, actor="bob")
    assert refused.value.details["reason"] == "author"


# --- 4. "system" is the engine's name, nobody else's -------------------------------------------


def test_no_token_grant_or_identity_may_act_as_system(
    tmp_path: Path, clock: ManualClock, app: Flask, http: FlaskClient
) -> None:
    engine = engine_of(app)
    with pytest.raises(ValidationError, match="reserved"):
        engine.grant(actor="root", grantee="system", role="admin", app_name="*", environment="*")
    with pytest.raises(ValidationError, match="reserved"):
        engine.create_token(actor="root", owner="system", scope="release")
    minted = http.post(
        f"{API}/tokens", json={"scope": "release", "actor": "System"}, headers=auth("root")
    )
    assert minted.status_code == 400
    with pytest.raises(ConfigurationError, match="reserved"):
        make_app(tmp_path / "x", clock, GRAYRELEASE_TOKENS={"sys-token-0123456789": "system"})

    class Impostor:
        @hookimpl(tryfirst=True)
        def grayrelease_identify(self, request: Any) -> str | None:
            return "system" if request.headers.get("X-Impostor") else None

    engine.plugin_manager.register(Impostor())
    created = http.post(f"{API}/plan", json=body(), headers={"X-Impostor": "1"})
    assert created.status_code == 403, created.json
    assert json_of(created)["error"]["details"]["reason"] == "reserved-actor"


# --- 6. the demo config API writes only with the editor role and write scope -------------------


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[FlaskClient]:
    from grayrelease_adapters.flask.demo import create_demo_app

    app = create_demo_app(f"sqlite:///{tmp_path / 'demo.db'}", "admin-token-0123456789")
    engine = engine_of(app)
    engine.grant(actor="admin", grantee="eddie", role="editor", app_name="shop", environment="prod")
    yield app.test_client()
    app.extensions["grayrelease"].close(app)


def test_the_demo_config_api_needs_the_editor_role_and_write_scope(demo: FlaskClient) -> None:
    item = {
        "appName": "shop",
        "environment": "prod",
        "groupName": "default",
        "configKey": "database.url",
    }
    engine = engine_of(demo.application)
    tokens = {
        (owner, scope): engine.create_token(actor="admin", owner=owner, scope=scope)[0]
        for owner, scope in (("mallory", "read"), ("eddie", "read"), ("eddie", "write"))
    }
    for (owner, scope), secret in tokens.items():
        answer = demo.put(
            "/api/config/item",
            headers=bearer(secret),
            json={**item, "value": f"jdbc:mysql://{owner}-{scope}:3306/x"},
        )
        expected = 200 if (owner, scope) == ("eddie", "write") else 403
        assert answer.status_code == expected, (owner, scope, answer.json)
    got = json_of(demo.get("/api/config/item", query_string=item))
    assert got == {"value": "jdbc:mysql://eddie-write:3306/x"}


def test_the_demo_config_api_refuses_the_reserved_actor_and_a_nul_key(demo: FlaskClient) -> None:
    """Invariant: the host's config API identifies callers as the plan API does (no identity
    hook answer passes for ``system``) and refuses keys a database cannot store."""
    item = {"appName": "shop", "environment": "prod", "groupName": "default", "value": "x"}

    class Impostor:
        @hookimpl(tryfirst=True)
        def grayrelease_identify(self, request: Any) -> str | None:
            return "system" if request.headers.get("X-Impostor") else None

    engine_of(demo.application).plugin_manager.register(Impostor())
    forged = demo.put(
        "/api/config/item", headers={"X-Impostor": "1"}, json={**item, "configKey": "a"}
    )
    assert forged.status_code == 403, forged.json
    assert json_of(forged)["error"]["details"]["reason"] == "reserved-actor"
    nul = demo.put(
        "/api/config/item",
        headers=bearer("admin-token-0123456789"),
        json={**item, "configKey": "a\x00b"},
    )
    assert nul.status_code == 400, nul.json
    assert json_of(nul)["error"]["details"]["field"] == "configKey"


# --- 9. text a database cannot store is a 400 naming the field, never a 500 --------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ({"description": "a\x00b"}, "description"),
        ({"planName": "a\x00b"}, "planName"),
        ({"grayValues": {"database.url": "x\x00y"}}, "grayValues.database.url"),
    ],
)
def test_nul_in_a_plan_body_is_refused_by_name(
    http: FlaskClient, path: dict[str, Any], field: str
) -> None:
    created = http.post(f"{API}/plan", json=body(**path), headers=auth("root"))
    assert created.status_code == 400, created.json
    assert json_of(created)["error"]["details"]["field"] == field
    draft = json_of(http.post(f"{API}/plan", json=body(), headers=auth("root")))
    edited = http.put(f"{API}/plan/{draft['planId']}", json=path, headers=auth("root"))
    assert edited.status_code == 400
    assert json_of(edited)["error"]["details"]["field"] == field


def test_nul_in_reasons_and_path_ids_is_refused_by_name(http: FlaskClient, app: Flask) -> None:
    engine = engine_of(app)
    plan_id = engine.start(engine.create_plan(body(), actor="root").id, actor="root").id
    for url, payload, field in (
        (f"{API}/plan/{plan_id}/rollback", {"reason": "r\x00"}, "reason"),
        (f"{API}/plan/{plan_id}/approve", {"reason": "r\x00"}, "reason"),
        (f"{API}/plan/{plan_id}/reject", {"reason": "r\x00"}, "reason"),
        (f"{API}/plan/ab%00cd/start", None, "planId"),
    ):
        answer = http.post(url, json=payload, headers=auth("root"))
        assert answer.status_code == 400, (url, answer.json)
        assert json_of(answer)["error"]["details"]["field"] == field
    for url in (
        f"{API}/plan/ab%00cd",
        f"{API}/plan/ab%00cd/logs",
        f"{API}/plans?appName=a%00b",
        f"{API}/config/value?appName=a%00b&environment=p&configKey=k&instanceId=i",
    ):
        answer = http.get(url, headers=auth("root"))
        assert answer.status_code == 400, (url, answer.json)
    assert engine.get_plan(plan_id).status is PlanStatus.ACTIVE


# --- 9. the OpenAPI document says what the server enforces -------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"autoRollback": []}, "autoRollback.checks"),
        ({"autoRollback": {"checks": []}}, "autoRollback.checks"),
        ({"startAt": "1969-12-31T23:59:59Z"}, "startAt"),
    ],
)
def test_the_document_refuses_what_the_server_refuses(
    http: FlaskClient, change: dict[str, Any], field: str
) -> None:
    import jsonschema_rs

    document = json_of(http.get(f"{API}/openapi.json", headers=auth("root")))
    assert document is not None
    schema = {
        **document["components"]["schemas"]["PlanCreate"],
        "components": document["components"],
    }
    validator = jsonschema_rs.validator_for(schema)
    planned = body(**change)
    assert not validator.is_valid(planned), f"the document accepts {change}"
    assert validator.is_valid(body())
    answer = http.post(f"{API}/plan", json=planned, headers=auth("root"))
    assert answer.status_code == 400
    assert json_of(answer)["error"]["details"]["field"] == field
