"""The REST API driven over HTTP (Flask's test client): the spec's scenarios and every error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from grayrelease_adapters.flask import GrayRelease

from grayrelease_core import ManualClock, Plan, hookimpl

TOKEN = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/api/gray-release"


def make_app(tmp_path: Path, clock: ManualClock, **config: Any) -> Flask:
    app = Flask("host")
    app.config.update(
        {
            "GRAYRELEASE_DATABASE_URL": f"sqlite:///{tmp_path / 'gray.db'}",
            "GRAYRELEASE_BACKGROUND_SYNC": False,
            "GRAYRELEASE_TOKENS": {TOKEN: "alice", BOB: "bob"},
            **config,
        }
    )
    GrayRelease(app, clock=clock, load_entrypoints=False)
    return app


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    app = make_app(tmp_path, clock)
    yield app
    app.extensions["grayrelease"].close(app)


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


def publish(app: Flask, app_name: str, key: str, value: str, group: str = "default") -> None:
    from grayrelease_core import ConfigRef

    engine = app.extensions["grayrelease"].state(app).engine
    engine.backend.publish(ConfigRef(app_name, "prod", group, key), value, actor="ops")


def value_of(
    http: FlaskClient, app_name: str, key: str, instance: str, ip: str = "", **extra: Any
) -> Any:
    params = {
        "appName": app_name,
        "environment": "prod",
        "configKey": key,
        "instanceId": instance,
        **extra,
    }
    if ip:
        params["instanceIp"] = ip
    answer = http.get(f"{API}/config/value", query_string=params)
    assert answer.status_code == 200, answer.json
    return answer.json


def act(http: FlaskClient, plan_id: str, action: str, body: Any = None, status: int = 200) -> Any:
    answer = http.post(f"{API}/plan/{plan_id}/{action}", json=body, headers=AUTH)
    assert answer.status_code == status, answer.json
    return answer.json


def error_of(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.data)
    assert answer.mimetype == "application/json"
    body = answer.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert "Traceback" not in answer.get_data(as_text=True)
    return dict(body["error"])


# --- the spec's scenarios ---------------------------------------------------------------------


def test_spec_api_example_database_config_by_ip(app: Flask, http: FlaskClient) -> None:
    publish(app, "demo-app", "database.url", "jdbc:old", group="database")
    publish(app, "demo-app", "database.username", "app", group="database")
    body = {
        "planName": "数据库配置灰度发布",
        "appName": "demo-app",
        "environment": "prod",
        "groupName": "database",
        "configKeys": ["database.url", "database.username"],
        "grayStrategy": "IP_WHITELIST",
        "grayRules": {"ipWhitelist": ["192.168.1.100", "192.168.1.101"]},
        "description": "数据库配置优化",
        "grayValues": {"database.url": "jdbc:new", "database.username": "app2"},
    }
    created = http.post(f"{API}/plan", json=body, headers=AUTH)
    assert created.status_code == 201
    plan = created.json
    assert plan["status"] == "DRAFT"
    assert plan["planName"] == "数据库配置灰度发布"
    assert plan["createdBy"] == "alice"
    assert created.headers["ETag"] == '"1"'
    assert "数据库配置灰度发布" in created.get_data(as_text=True)  # UTF-8, not \\u escapes
    plan_id = plan["planId"]

    started = act(http, plan_id, "start")
    assert started["status"] == "ACTIVE"
    assert started["items"][0]["originalValue"] == "jdbc:old"
    assert started["startedAt"].endswith("Z")

    # The spec's GET /config/value example, verbatim.
    spec_query = (
        f"{API}/config/value?appName=demo-app&environment=prod&groupName=database"
        "&configKey=database.url&instanceId=instance-001&instanceIp=192.168.1.100"
    )
    assert http.get(spec_query).json == {"value": "jdbc:new", "gray": True, "planId": plan_id}
    other = dict(groupName="database")
    assert value_of(http, "demo-app", "database.url", "instance-002", "192.168.1.102", **other) == {
        "value": "jdbc:old",
        "gray": False,
        "planId": plan_id,
    }
    act(http, plan_id, "pause")
    assert value_of(http, "demo-app", "database.url", "instance-001", "192.168.1.100", **other)[
        "gray"
    ]
    assert not value_of(http, "demo-app", "database.url", "instance-009", "192.168.1.101", **other)[
        "gray"
    ]
    act(http, plan_id, "resume")
    assert value_of(http, "demo-app", "database.url", "instance-009", "192.168.1.101", **other)[
        "gray"
    ]
    done = act(http, plan_id, "complete")
    assert done["status"] == "COMPLETED"
    assert value_of(http, "demo-app", "database.url", "x", "10.0.0.1", **other) == {
        "value": "jdbc:new",
        "gray": False,
        "planId": None,
    }
    rolled = act(http, plan_id, "rollback", {"reason": "slow queries"})
    assert rolled["status"] == "ROLLBACK"
    assert (
        value_of(http, "demo-app", "database.url", "x", "10.0.0.1", **other)["value"] == "jdbc:old"
    )

    logs = http.get(f"{API}/plan/{plan_id}/logs", headers=AUTH).json
    assert [row["action"] for row in logs["items"]] == [
        "CREATED",
        "STARTED",
        "PAUSED",
        "RESUMED",
        "COMPLETED",
        "ROLLED_BACK",
    ]
    assert logs["items"][-1]["message"] == "slow queries"
    instances = http.get(f"{API}/plan/{plan_id}/instances", headers=AUTH).json
    assert {row["instanceId"] for row in instances["items"]} == {"instance-001", "instance-009"}


def test_spec_feature_switch_at_ten_percent(app: Flask, http: FlaskClient) -> None:
    publish(app, "order-service", "feature.newPayment.enabled", "false")
    body = {
        "planName": "新功能开关灰度",
        "appName": "order-service",
        "environment": "prod",
        "configKeys": ["feature.newPayment.enabled"],
        "grayStrategy": "PERCENTAGE",
        "grayRules": {"percentage": 10},
        "grayValues": {"feature.newPayment.enabled": True},
    }
    plan_id = http.post(f"{API}/plan", json=body, headers=AUTH).json["planId"]
    act(http, plan_id, "start")
    answers = [
        value_of(http, "order-service", "feature.newPayment.enabled", f"o-{n}") for n in range(600)
    ]
    gray = {n for n, a in enumerate(answers) if a["gray"]}
    assert 30 <= len(gray) <= 95
    assert all(answers[n]["value"] == "true" for n in gray)
    act(http, plan_id, "pause")
    again = [
        value_of(http, "order-service", "feature.newPayment.enabled", f"o-{n}") for n in range(600)
    ]
    assert {n for n, a in enumerate(again) if a["gray"]} == gray
    newcomers = [
        value_of(http, "order-service", "feature.newPayment.enabled", f"new-{n}")
        for n in range(600)
    ]
    assert not any(a["gray"] for a in newcomers)
    act(http, plan_id, "resume")
    act(http, plan_id, "complete")
    assert value_of(http, "order-service", "feature.newPayment.enabled", "o-1")["value"] == "true"
    act(http, plan_id, "rollback")
    assert value_of(http, "order-service", "feature.newPayment.enabled", "o-1")["value"] == "false"


def test_spec_canary_with_labels_and_users(app: Flask, http: FlaskClient) -> None:
    publish(app, "cache-service", "redis.cluster.nodes", "a:6379")
    body = {
        "planName": "缓存配置金丝雀发布",
        "appName": "cache-service",
        "environment": "prod",
        "configKeys": ["redis.cluster.nodes"],
        "grayStrategy": "CANARY",
        "grayRules": {
            "canary": {
                "canaryInstances": ["192.168.1.200"],
                "stepPercentage": 20,
                "stepInterval": 30,
            }
        },
        "grayValues": {"redis.cluster.nodes": "a:6379,b:6379"},
    }
    plan = http.post(f"{API}/plan", json=body, headers=AUTH).json
    started = act(http, plan["planId"], "start")
    assert started["progress"]["nextStepAt"] is not None
    assert value_of(http, "cache-service", "redis.cluster.nodes", "c-1", "192.168.1.200")["gray"]
    assert not value_of(http, "cache-service", "redis.cluster.nodes", "c-2", "192.168.1.201")[
        "gray"
    ]
    act(http, plan["planId"], "complete")

    labels = {
        **body,
        "planName": "labels",
        "grayStrategy": "LABEL",
        "grayRules": {"labels": {"zone": ["hz-a"], "version": ["2.1.0"]}},
    }
    label_plan = http.post(f"{API}/plan", json=labels, headers=AUTH).json
    act(http, label_plan["planId"], "start")
    key = "redis.cluster.nodes"
    assert value_of(http, "cache-service", key, "c-3", labels=["zone=hz-a", "version=2.1.0"])[
        "gray"
    ]
    assert value_of(http, "cache-service", key, "c-3", labels="zone=hz-a,version=2.1.0")["gray"]
    assert not value_of(http, "cache-service", key, "c-3", labels="zone=hz-b,version=2.1.0")["gray"]


def test_user_id_reaches_the_user_whitelist(app: Flask, http: FlaskClient) -> None:
    body = {
        "planName": "vip",
        "appName": "shop",
        "environment": "prod",
        "configKeys": ["k"],
        "grayStrategy": "USER_WHITELIST",
        "grayRules": {"userWhitelist": ["u-1"]},
        "grayValues": {"k": "v2"},
    }
    plan_id = http.post(f"{API}/plan", json=body, headers=AUTH).json["planId"]
    act(http, plan_id, "start")
    assert value_of(http, "shop", "k", "i-1", userId="u-1")["gray"]
    assert not value_of(http, "shop", "k", "i-1", userId="u-2")["gray"]


def test_instance_ip_defaults_to_the_callers_address(app: Flask, http: FlaskClient) -> None:
    body = {
        "planName": "local",
        "appName": "svc",
        "environment": "prod",
        "configKeys": ["k"],
        "grayStrategy": "IP_WHITELIST",
        "grayRules": {"ipWhitelist": ["127.0.0.1"]},
        "grayValues": {"k": "v2"},
    }
    plan_id = http.post(f"{API}/plan", json=body, headers=AUTH).json["planId"]
    act(http, plan_id, "start")
    assert value_of(http, "svc", "k", "i-1")["gray"]  # the test client calls from 127.0.0.1


# --- listing, reading, editing -------------------------------------------------------------------


def new_plan(http: FlaskClient, **overrides: Any) -> dict[str, Any]:
    body = {
        "planName": "p",
        "appName": "svc",
        "environment": "prod",
        "configKeys": ["k"],
        "grayStrategy": "PERCENTAGE",
        "grayRules": {"percentage": 50},
        "grayValues": {"k": "v2"},
        **overrides,
    }
    answer = http.post(f"{API}/plan", json=body, headers=AUTH)
    assert answer.status_code == 201, answer.json
    created = answer.json
    assert isinstance(created, dict)
    return created


def test_list_filters_and_pages(http: FlaskClient) -> None:
    for n in range(5):
        new_plan(http, appName=f"svc-{n % 2}", configKeys=[f"k{n}"], grayValues={f"k{n}": "x"})
    active = new_plan(http, appName="svc-9")
    act(http, active["planId"], "start")
    page = http.get(
        f"{API}/plans", query_string={"appName": "svc-0", "pageSize": 2}, headers=AUTH
    ).json
    assert (page["total"], len(page["items"]), page["page"], page["pageSize"]) == (3, 2, 1, 2)
    assert (
        http.get(f"{API}/plans", query_string={"status": "ACTIVE"}, headers=AUTH).json["total"] == 1
    )
    assert (
        http.get(
            f"{API}/plans",
            query_string={"groupName": "default", "environment": "prod"},
            headers=AUTH,
        ).json["total"]
        == 6
    )
    found = http.get(f"{API}/plans", query_string={"search": "K3"}, headers=AUTH).json
    assert [plan["configKeys"] for plan in found["items"]] == [["k3"]]
    # Blank: no filter at all.
    assert http.get(f"{API}/plans?search=+", headers=AUTH).json["total"] == 6


def test_list_shows_each_plans_last_action(http: FlaskClient) -> None:
    draft = new_plan(http, configKeys=["a"], grayValues={"a": "x"})
    started = new_plan(http, configKeys=["b"], grayValues={"b": "x"})
    act(http, started["planId"], "start")
    act(http, started["planId"], "pause")
    http.post(f"{API}/plan/{draft['planId']}/pause", headers=AUTH)  # refused: still its last
    items = {p["planId"]: p for p in http.get(f"{API}/plans", headers=AUTH).json["items"]}
    assert items[started["planId"]]["lastAction"] == {
        "action": "PAUSED",
        "actor": "alice",
        "at": items[started["planId"]]["updatedAt"],
    }
    assert items[draft["planId"]]["lastAction"]["action"] == "CREATED"
    # Only the list carries it.
    assert "lastAction" not in (http.get(f"{API}/plan/{draft['planId']}", headers=AUTH).json or {})


def test_get_put_delete(http: FlaskClient) -> None:
    plan = new_plan(http)
    plan_id = plan["planId"]
    got = http.get(f"{API}/plan/{plan_id}", headers=AUTH)
    assert got.json == plan
    changed = http.put(
        f"{API}/plan/{plan_id}", json={"planName": "renamed"}, headers={**AUTH, "If-Match": '"1"'}
    )
    assert changed.status_code == 200
    assert changed.json["planName"] == "renamed"
    assert changed.headers["ETag"] == '"2"'
    stale = http.put(
        f"{API}/plan/{plan_id}", json={"planName": "again"}, headers={**AUTH, "If-Match": '"1"'}
    )
    assert error_of(stale, 409)["code"] == "CONFLICT"
    assert http.delete(f"{API}/plan/{plan_id}", headers=AUTH).status_code == 204
    assert error_of(http.get(f"{API}/plan/{plan_id}", headers=AUTH), 404)["code"] == "NOT_FOUND"
    logs = http.get(f"{API}/plan/{plan_id}/logs", headers=AUTH)  # a deleted plan keeps its audit
    assert [row["action"] for row in logs.json["items"]] == ["CREATED", "UPDATED", "DELETED"]


def test_actor_comes_from_the_token(http: FlaskClient) -> None:
    plan = new_plan(http)
    started = http.post(
        f"{API}/plan/{plan['planId']}/start", headers={"Authorization": f"Bearer {BOB}"}
    )
    assert started.json["updatedBy"] == "bob"


def test_a_host_identify_hook_wins_over_tokens(tmp_path: Path, clock: ManualClock) -> None:
    class HeaderLogin:
        @hookimpl
        def grayrelease_identify(self, request: Any) -> str | None:
            user = request.headers.get("X-Remote-User")
            return str(user) if user else None

    app = Flask("host")
    app.config.update(
        GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path / 'h.db'}",
        GRAYRELEASE_BACKGROUND_SYNC=False,
        GRAYRELEASE_TOKENS={TOKEN: "alice"},
    )
    GrayRelease(app, plugins=[HeaderLogin()], clock=clock, load_entrypoints=False)
    http = app.test_client()
    body = {
        "planName": "p",
        "appName": "a",
        "environment": "e",
        "configKeys": ["k"],
        "grayStrategy": "PERCENTAGE",
        "grayRules": {"percentage": 1},
    }
    assert (
        http.post(f"{API}/plan", json=body, headers={"X-Remote-User": "carol"}).json["createdBy"]
        == "carol"
    )
    assert http.post(f"{API}/plan", json=body, headers=AUTH).json["createdBy"] == "alice"
    error_of(http.post(f"{API}/plan", json=body), 401)
    app.extensions["grayrelease"].close(app)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/plan"),
        ("get", "/plans"),
        ("get", "/plan/x"),
        ("put", "/plan/x"),
        ("delete", "/plan/x"),
        ("post", "/plan/x/start"),
        ("post", "/plan/x/rollback"),
        ("get", "/plan/x/logs"),
        ("get", "/plan/x/instances"),
    ],
)
def test_plan_endpoints_need_an_identity(http: FlaskClient, method: str, path: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": TOKEN},
    ):
        answer = getattr(http, method)(f"{API}{path}", headers=headers, json={})
        error = error_of(answer, 401)
        assert error["code"] == "UNAUTHENTICATED"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_config_reads_can_require_a_client_token(tmp_path: Path, clock: ManualClock) -> None:
    client_token = "client-token-0123456789abc"
    app = make_app(tmp_path, clock, GRAYRELEASE_CLIENT_TOKENS=[client_token])
    http = app.test_client()
    params = {"appName": "a", "environment": "e", "configKey": "k", "instanceId": "i"}
    error_of(http.get(f"{API}/config/value", query_string=params), 401)
    error_of(http.get(f"{API}/config/value", query_string=params, headers=AUTH), 401)
    ok = http.get(
        f"{API}/config/value",
        query_string=params,
        headers={"Authorization": f"Bearer {client_token}"},
    )
    assert ok.json == {"value": None, "gray": False, "planId": None}
    app.extensions["grayrelease"].close(app)


FULL = {
    "planName": "p",
    "appName": "a",
    "environment": "e",
    "configKeys": ["k"],
    "grayStrategy": "PERCENTAGE",
    "grayRules": {"percentage": 5},
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in FULL.items() if k != "appName"}, "appName"),
        ({**FULL, "planName": 1}, "planName"),
        ({**FULL, "grayRules": {"percentage": 500}}, "grayRules.percentage"),
        ({**FULL, "configKeys": ["k", "k"]}, "configKeys[1]"),
        ({**FULL, "extra": 1}, "extra"),
        ([1, 2], "body"),
        ("just a string", "body"),
        (None, "body"),
    ],
)
def test_create_errors_name_the_field(http: FlaskClient, body: Any, field: str) -> None:
    answer = http.post(
        f"{API}/plan", data=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"}
    )
    error = error_of(answer, 400)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["field"] == field


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"planName": ', "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"", "is required"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_bodies_are_400_naming_body(http: FlaskClient, raw: bytes, problem: str) -> None:
    answer = http.post(
        f"{API}/plan", data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    error = error_of(answer, 400)
    assert error["details"]["field"] == "body"
    assert problem in error["message"]


def test_oversized_bodies_are_413_naming_body_and_limit(tmp_path: Path, clock: ManualClock) -> None:
    app = make_app(tmp_path, clock, GRAYRELEASE_MAX_BODY_BYTES=4096)
    http = app.test_client()
    big = {"planName": "p", "description": "x" * 5000}
    error = error_of(http.post(f"{API}/plan", json=big, headers=AUTH), 413)
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert error["details"] == {"field": "body", "limit": 4096}
    assert "larger" in error["message"]
    app.extensions["grayrelease"].close(app)


def test_default_body_limit_is_one_mebibyte(http: FlaskClient) -> None:
    body = {
        "planName": "p",
        "appName": "a",
        "environment": "e",
        "configKeys": ["k"],
        "grayStrategy": "PERCENTAGE",
        "grayRules": {"percentage": 1},
        "grayValues": {"k": "v" * (1024 * 1024)},
    }
    assert (
        error_of(http.post(f"{API}/plan", json=body, headers=AUTH), 413)["details"]["limit"]
        == 1024 * 1024
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"environment": "prod", "configKey": "k", "instanceId": "i"}, "appName"),
        ({"appName": "a", "environment": "prod", "configKey": "k"}, "instanceId"),
        (
            {
                "appName": "a",
                "environment": "prod",
                "configKey": "k",
                "instanceId": "i",
                "color": "red",
            },
            "color",
        ),
        (
            {
                "appName": "a",
                "environment": "prod",
                "configKey": "k",
                "instanceId": "i",
                "labels": "zone",
            },
            "labels",
        ),
        (
            {"appName": ["a", "b"], "environment": "prod", "configKey": "k", "instanceId": "i"},
            "appName",
        ),
    ],
)
def test_config_value_parameter_errors(
    http: FlaskClient, params: dict[str, Any], field: str
) -> None:
    error = error_of(http.get(f"{API}/config/value", query_string=params), 400)
    assert error["details"]["field"] == field


def test_current_values_serve_no_gray_value_and_record_no_instance(
    app: Flask, http: FlaskClient
) -> None:
    publish(app, "svc", "k", "v1")
    publish(app, "svc", "other", "o1")
    plan = new_plan(http, grayRules={"percentage": 100})
    act(http, plan["planId"], "start")
    query = {"appName": "svc", "environment": "prod", "configKey": ["k", "unset", "other"]}
    for _ in range(3):
        answer = http.get(f"{API}/config/current", query_string=query, headers=AUTH)
        assert answer.status_code == 200, answer.json
        assert answer.json == {
            "items": [
                {"configKey": "k", "value": "v1", "planId": plan["planId"]},
                {"configKey": "unset", "value": None, "planId": None},
                {"configKey": "other", "value": "o1", "planId": None},
            ]
        }
    # Every client is in this plan's gray set, yet the lookups above were not clients.
    instances = http.get(f"{API}/plan/{plan['planId']}/instances", headers=AUTH).json
    assert instances["total"] == 0
    assert value_of(http, "svc", "k", "i-1")["value"] == "v2"
    instances = http.get(f"{API}/plan/{plan['planId']}/instances", headers=AUTH).json
    assert [row["instanceId"] for row in instances["items"]] == ["i-1"]
    # Completed, the plan holds the key no longer and its value is the backend's.
    act(http, plan["planId"], "complete")
    answer = http.get(f"{API}/config/current", query_string=query, headers=AUTH)
    assert answer.json["items"][0] == {"configKey": "k", "value": "v2", "planId": None}


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"appName": "svc", "environment": "prod"}, 400, "configKey"),
        ({"appName": "svc", "environment": "prod", "configKey": ["k", " k "]}, 400, "configKey[1]"),
        ({"appName": "svc", "environment": "prod", "configKey": [""]}, 400, "configKey[0]"),
        ({"appName": "svc", "environment": "prod", "configKey": ["k"] * 2}, 400, "configKey[1]"),
        ({"environment": "prod", "configKey": "k"}, 400, "appName"),
        ({"appName": "svc", "configKey": "k"}, 400, "environment"),
        (
            {"appName": "svc", "environment": "prod", "configKey": "k", "instanceId": "i"},
            400,
            "instanceId",
        ),
    ],
)
def test_current_values_parameter_errors(
    http: FlaskClient, params: dict[str, Any], status: int, field: str
) -> None:
    answer = http.get(f"{API}/config/current", query_string=params, headers=AUTH)
    assert error_of(answer, status)["details"]["field"] == field


def test_current_values_need_an_identity(http: FlaskClient) -> None:
    query = {"appName": "svc", "environment": "prod", "configKey": "k"}
    error_of(http.get(f"{API}/config/current", query_string=query), 401)


def test_too_many_current_values_are_refused(http: FlaskClient) -> None:
    keys = [f"k{n}" for n in range(201)]
    query = {"appName": "svc", "environment": "prod", "configKey": keys}
    error = error_of(http.get(f"{API}/config/current", query_string=query, headers=AUTH), 400)
    assert error["details"]["field"] == "configKey"
    assert "at most 200" in error["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "RUNNING"}, "status"),
        ({"page": "0"}, "page"),
        ({"page": "one"}, "page"),
        ({"pageSize": "1000"}, "pageSize"),
        ({"sort": "name"}, "sort"),
        ({"search": "x" * 129}, "search"),
        ({"search": "a\nb"}, "search"),
    ],
)
def test_list_parameter_errors(http: FlaskClient, query: dict[str, str], field: str) -> None:
    error = error_of(http.get(f"{API}/plans", query_string=query, headers=AUTH), 400)
    assert error["details"]["field"] == field


def test_state_errors_are_409_with_the_allowed_actions(http: FlaskClient) -> None:
    plan = new_plan(http)
    error = error_of(http.post(f"{API}/plan/{plan['planId']}/pause", headers=AUTH), 409)
    assert error["code"] == "INVALID_TRANSITION"
    assert error["details"]["allowedActions"] == ["update", "delete", "start"]


def test_overlapping_start_is_409_naming_the_other_plan(http: FlaskClient) -> None:
    first, second = new_plan(http), new_plan(http)
    act(http, first["planId"], "start")
    error = error_of(http.post(f"{API}/plan/{second['planId']}/start", headers=AUTH), 409)
    assert error["details"]["conflictingPlanIds"] == [first["planId"]]


def test_action_bodies_are_checked(http: FlaskClient) -> None:
    plan = new_plan(http)
    plan_id = plan["planId"]
    assert (
        error_of(http.post(f"{API}/plan/{plan_id}/start", json={"now": True}, headers=AUTH), 400)[
            "details"
        ]["field"]
        == "now"
    )
    assert (
        error_of(http.post(f"{API}/plan/{plan_id}/start", json=[1], headers=AUTH), 400)["details"][
            "field"
        ]
        == "body"
    )
    act(http, plan_id, "start", {})
    bad = http.post(f"{API}/plan/{plan_id}/rollback", json={"force": "yes"}, headers=AUTH)
    assert error_of(bad, 400)["details"]["field"] == "force"
    bad = http.post(f"{API}/plan/{plan_id}/rollback", json={"why": "x"}, headers=AUTH)
    assert error_of(bad, 400)["details"]["field"] == "why"
    bad = http.post(f"{API}/plan/{plan_id}/rollback", json={"reason": 5}, headers=AUTH)
    assert error_of(bad, 400)["details"]["field"] == "reason"
    bad = http.post(f"{API}/plan/{plan_id}/pause", headers={**AUTH, "If-Match": "soon"})
    assert error_of(bad, 400)["details"]["field"] == "If-Match"


def test_unknown_routes_and_methods_answer_in_the_error_shape(http: FlaskClient) -> None:
    assert error_of(http.get(f"{API}/nothing/here", headers=AUTH), 404)["code"] == "NOT_FOUND"
    answer = http.delete(f"{API}/plans", headers=AUTH)
    assert error_of(answer, 405)["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in answer.headers["Allow"]


def test_unknown_query_parameters_on_any_endpoint(http: FlaskClient) -> None:
    plan = new_plan(http)
    answer = http.get(f"{API}/plan/{plan['planId']}", query_string={"verbose": "1"}, headers=AUTH)
    assert error_of(answer, 400)["details"]["field"] == "verbose"


def test_an_unexpected_failure_is_a_500_without_a_stack_trace(
    app: Flask, http: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    engine = app.extensions["grayrelease"].state(app).engine

    def broken(*args: Any, **kwargs: Any) -> Plan:
        raise RuntimeError("disk on fire")

    engine.get_plan = broken
    answer = http.get(f"{API}/plan/any", headers=AUTH)
    error = error_of(answer, 500)
    assert error["code"] == "INTERNAL_ERROR"
    assert "disk on fire" not in answer.get_data(as_text=True)
    assert "disk on fire" in caplog.text


# --- the extension ---------------------------------------------------------------------------


def test_init_app_refuses_a_second_registration(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="already registered"):
        GrayRelease(app)


def test_factory_pattern_and_custom_prefix(tmp_path: Path, clock: ManualClock) -> None:
    extension = GrayRelease(clock=clock, load_entrypoints=False)
    app = Flask("factory")
    app.config.update(
        GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}",
        GRAYRELEASE_BACKGROUND_SYNC=False,
        GRAYRELEASE_URL_PREFIX="/gray",
    )
    extension.init_app(app)
    assert app.extensions["grayrelease"] is extension
    with app.app_context():
        assert extension.engine is extension.state(app).engine
    answer = app.test_client().get(
        "/gray/config/value",
        query_string={"appName": "a", "environment": "e", "configKey": "k", "instanceId": "i"},
    )
    assert answer.json == {"value": None, "gray": False, "planId": None}
    assert app.test_client().get("/gray/openapi.json").json["servers"] == [{"url": "/gray"}]
    extension.close(app)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"GRAYRELEASE_TOKENS": {"short": "x"}}, "GRAYRELEASE_TOKENS"),
        ({"GRAYRELEASE_TOKENS": ["tok"]}, "GRAYRELEASE_TOKENS"),
        ({"GRAYRELEASE_CLIENT_TOKENS": "one-token-only-0123456"}, "GRAYRELEASE_CLIENT_TOKENS"),
        ({"GRAYRELEASE_URL_PREFIX": "api/"}, "GRAYRELEASE_URL_PREFIX"),
        ({"GRAYRELEASE_MAX_BODY_BYTES": 10}, "GRAYRELEASE_MAX_BODY_BYTES"),
        ({"GRAYRELEASE_CACHE_TTL": "fast"}, "settings.cache_ttl"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, config: dict[str, Any], key: str) -> None:
    from grayrelease_core import ValidationError

    app = Flask("bad")
    app.config.update(
        GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path / 'b.db'}",
        GRAYRELEASE_BACKGROUND_SYNC=False,
        **config,
    )
    with pytest.raises(ValidationError) as caught:
        GrayRelease(app, load_entrypoints=False)
    assert caught.value.field == key
    assert "grayrelease" not in app.extensions
