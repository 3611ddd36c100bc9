"""Notifications over HTTP and the command line: the outbox a plan action fills, the inbox
channel that delivers into people's messages, reading them, and ``grayrelease notify``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from grayrelease_adapters.flask.cli import cli
from werkzeug.test import TestResponse

from grayrelease_core import GrayRelease as Engine
from grayrelease_core import ManualClock

from .conftest import spec_body
from .test_http_api import API, AUTH, BOB, error_of, make_app

BOB_AUTH = {"Authorization": f"Bearer {BOB}"}


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    # No threads: notifications go out only when a test calls ``engine.deliver()``.
    app = make_app(tmp_path, clock, GRAYRELEASE_TICK_INTERVAL=0, GRAYRELEASE_DELIVERY_INTERVAL=0)
    yield app
    app.extensions["grayrelease"].close(app)


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def engine(app: Flask) -> Engine:
    found: Engine = app.extensions["grayrelease"].state(app).engine
    return found


def plan_body(name: str, key: str = "database.url", **overrides: Any) -> dict[str, Any]:
    """The spec's IP-whitelist plan on one key of its own, so several can be live at once."""
    return spec_body(
        planName=name, configKeys=[key], grayValues={key: f"{name}-value"}, **overrides
    )


def ok(answer: TestResponse, status: int = 200) -> Any:
    """The answer's JSON body, once its status is the one expected."""
    assert answer.status_code == status, (answer.status_code, answer.data)
    body = answer.json
    assert body is not None
    return body


def create(http: FlaskClient, body: dict[str, Any]) -> str:
    plan_id: str = ok(http.post(f"{API}/plan", json=body, headers=AUTH), 201)["planId"]
    return plan_id


def act(http: FlaskClient, plan_id: str, action: str, body: Any = None) -> None:
    answer = http.post(f"{API}/plan/{plan_id}/{action}", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.json


def started(http: FlaskClient, body: dict[str, Any]) -> str:
    plan_id = create(http, body)
    act(http, plan_id, "start")
    return plan_id


def inbox(http: FlaskClient, headers: dict[str, str] = AUTH, **params: str) -> Any:
    return ok(http.get(f"{API}/messages", query_string=params, headers=headers))


def notifications(http: FlaskClient, plan_id: str) -> Any:
    return ok(http.get(f"{API}/notifications", query_string={"planId": plan_id}, headers=AUTH))


def unread_count(http: FlaskClient, headers: dict[str, str] = AUTH) -> int:
    answer = ok(http.get(f"{API}/messages/unread-count", headers=headers))
    assert set(answer) == {"unreadCount"}
    count: int = answer["unreadCount"]
    return count


def read(http: FlaskClient, message_id: int, headers: dict[str, str] = AUTH) -> TestResponse:
    return http.post(f"{API}/messages/{message_id}/read", headers=headers)


# --- the outbox, delivery and one message --------------------------------------------------


def test_a_start_is_queued_then_delivered_to_the_authors_inbox(
    http: FlaskClient, engine: Engine
) -> None:
    plan_id = started(http, plan_body("数据库配置灰度发布"))

    assert inbox(http) == {"items": [], "total": 0, "page": 1, "pageSize": 20, "unreadCount": 0}
    queued = notifications(http, plan_id)
    assert queued["total"] == 1
    (pending,) = queued["items"]
    assert (pending["channel"], pending["event"], pending["recipients"]) == (
        "inbox",
        "STARTED",
        ["alice"],
    )
    assert (pending["state"], pending["attempts"], pending["history"]) == ("PENDING", 0, [])
    assert pending["planId"] == plan_id
    assert pending["severity"] == "info"
    assert pending["nextAttemptAt"] == "2026-01-01T00:00:00.000Z"
    assert pending["deliveredAt"] is None

    report = engine.deliver()
    assert report.delivered == [pending["id"]]
    assert (report.retrying, report.failed, report.errors) == ([], [], [])

    messages = inbox(http)
    assert (messages["total"], messages["unreadCount"]) == (1, 1)
    (message,) = messages["items"]
    assert isinstance(message["id"], int)
    assert message["id"] > 0
    assert (message["planId"], message["event"], message["severity"]) == (
        plan_id,
        "STARTED",
        "info",
    )
    assert "数据库配置灰度发布" in message["title"]
    assert message["title"] == pending["title"]
    assert message["body"].startswith(f"### {message['title']}\n")
    assert "- **计划**: 数据库配置灰度发布" in message["body"]
    assert message["link"] is None
    assert (message["read"], message["readAt"]) == (False, None)
    assert message["createdAt"] == "2026-01-01T00:00:00.000Z"
    assert unread_count(http) == 1

    (delivered,) = notifications(http, plan_id)["items"]
    assert delivered["id"] == pending["id"]
    assert (delivered["state"], delivered["attempts"]) == ("DELIVERED", 1)
    assert delivered["deliveredAt"] == "2026-01-01T00:00:00.000Z"
    assert delivered["nextAttemptAt"] is None
    (attempt,) = delivered["history"]
    assert (attempt["number"], attempt["delivered"], attempt["error"]) == (1, True, "")

    assert inbox(http, BOB_AUTH) == {
        "items": [],
        "total": 0,
        "page": 1,
        "pageSize": 20,
        "unreadCount": 0,
    }
    assert unread_count(http, BOB_AUTH) == 0
    stolen = error_of(read(http, message["id"], BOB_AUTH), 404)
    assert stolen["code"] == "NOT_FOUND"
    assert inbox(http)["items"][0]["read"] is False  # bob's try did not mark it read
    assert engine.deliver().delivered == []  # delivered once, never again


def test_unread_messages_come_first_newest_first_and_reading_is_idempotent(
    http: FlaskClient, engine: Engine, clock: ManualClock
) -> None:
    first = started(http, plan_body("first", "database.url"))
    clock.advance(timedelta(minutes=1))
    act(http, first, "rollback", {"reason": "slow queries"})
    clock.advance(timedelta(minutes=1))
    second = started(http, plan_body("second", "database.username"))
    engine.deliver()

    listed = inbox(http)
    assert [(m["planId"], m["event"]) for m in listed["items"]] == [
        (second, "STARTED"),
        (first, "ROLLED_BACK"),
        (first, "STARTED"),
    ]
    assert (listed["total"], listed["unreadCount"]) == (3, 3)
    rolled_back = listed["items"][1]
    assert rolled_back["severity"] == "warning"
    assert "slow queries" in rolled_back["body"]
    newest, middle, oldest = (m["id"] for m in listed["items"])

    clock.advance(timedelta(minutes=5))
    first_read = ok(read(http, newest))
    assert first_read["id"] == newest
    assert (first_read["read"], first_read["readAt"]) == (True, "2026-01-01T00:07:00.000Z")
    assert unread_count(http) == 2

    after = inbox(http)
    assert [m["id"] for m in after["items"]] == [middle, oldest, newest]
    assert [m["read"] for m in after["items"]] == [False, False, True]
    assert (after["total"], after["unreadCount"]) == (3, 2)

    unread = inbox(http, unread="true")
    assert [m["id"] for m in unread["items"]] == [middle, oldest]
    assert (unread["total"], unread["unreadCount"]) == (2, 2)
    assert [m["id"] for m in inbox(http, unread="false")["items"]] == [middle, oldest, newest]

    paged = inbox(http, page="2", pageSize="2")
    assert [m["id"] for m in paged["items"]] == [newest]
    assert (paged["total"], paged["page"], paged["pageSize"]) == (3, 2, 2)

    clock.advance(timedelta(hours=1))
    again = ok(read(http, newest))
    assert (again["read"], again["readAt"]) == (True, "2026-01-01T00:07:00.000Z")
    assert unread_count(http) == 2

    assert read(http, oldest).status_code == 200
    assert unread_count(http) == 1
    assert inbox(http)["unreadCount"] == 1
    assert [m["id"] for m in inbox(http, unread="true")["items"]] == [middle]
    assert error_of(read(http, newest + 1000), 404)["code"] == "NOT_FOUND"
    assert error_of(read(http, 999_999_999_999_999_999), 404)["code"] == "NOT_FOUND"


def test_a_tick_delivers_what_is_due(http: FlaskClient, engine: Engine) -> None:
    plan_id = started(http, plan_body("ticked"))
    (queued,) = notifications(http, plan_id)["items"]
    report = engine.tick()
    assert report.notifications is not None
    assert report.notifications.delivered == [queued["id"]]
    assert unread_count(http) == 1
    assert notifications(http, plan_id)["items"][0]["state"] == "DELIVERED"


# --- a plan's own routing -------------------------------------------------------------------


def test_a_plans_recipients_replace_its_author(http: FlaskClient, engine: Engine) -> None:
    body = plan_body("for the team", notify={"recipients": {"inbox": ["bob", "carol"]}})
    created = ok(http.post(f"{API}/plan", json=body, headers=AUTH), 201)
    assert created["notify"] == {"recipients": {"inbox": ["bob", "carol"]}}
    plan_id = created["planId"]
    act(http, plan_id, "start")

    (queued,) = notifications(http, plan_id)["items"]
    assert queued["recipients"] == ["bob", "carol"]
    engine.deliver()

    assert inbox(http)["total"] == 0
    assert unread_count(http) == 0
    (bobs,) = inbox(http, BOB_AUTH)["items"]
    assert (bobs["planId"], bobs["event"]) == (plan_id, "STARTED")
    assert unread_count(http, BOB_AUTH) == 1
    (carols,) = engine.messages("carol").items
    assert (carols.plan_id, carols.event) == (plan_id, "STARTED")
    assert carols.id != bobs["id"]
    assert engine.messages("alice").total == 0


@pytest.mark.parametrize(
    ("notify", "field"),
    [
        ({"channels": ["nope"]}, "notify.channels[0]"),
        ({"channels": ["inbox", "nope"]}, "notify.channels[1]"),
        ({"events": ["BOGUS"]}, "notify.events[0]"),
        ({"events": ["STARTED", "BOGUS"]}, "notify.events[1]"),
        ({"minSeverity": {"inbox": "high"}}, "notify.minSeverity.inbox"),
        ({"recipients": {"nope": ["bob"]}}, "notify.recipients.nope"),
        ({"recipients": {"inbox": [""]}}, "notify.recipients.inbox[0]"),
        ({"channel": ["inbox"]}, "notify.channel"),
    ],
)
def test_a_bad_notify_is_refused_by_name(
    http: FlaskClient, notify: dict[str, Any], field: str
) -> None:
    answer = http.post(f"{API}/plan", json=plan_body("bad", notify=notify), headers=AUTH)
    error = error_of(answer, 400)
    assert (error["code"], error["details"]["field"]) == ("VALIDATION_ERROR", field)
    assert ok(http.get(f"{API}/plans", headers=AUTH))["total"] == 0


def test_a_channel_taking_only_critical_events_hears_no_start_or_rollback(
    http: FlaskClient, engine: Engine
) -> None:
    body = plan_body("quiet", notify={"minSeverity": {"inbox": "critical"}})
    plan_id = started(http, body)
    act(http, plan_id, "rollback", {"reason": "changed my mind"})
    assert notifications(http, plan_id)["total"] == 0
    assert engine.deliver().delivered == []
    assert inbox(http)["total"] == 0
    assert unread_count(http) == 0


def test_a_plans_events_choose_what_is_told(http: FlaskClient, engine: Engine) -> None:
    plan_id = started(http, plan_body("paused", notify={"events": ["PAUSED"]}))
    act(http, plan_id, "pause")
    (queued,) = notifications(http, plan_id)["items"]
    assert queued["event"] == "PAUSED"
    engine.deliver()
    assert [m["event"] for m in inbox(http)["items"]] == ["PAUSED"]


# --- bad requests --------------------------------------------------------------------------


def test_notifications_need_a_known_plan(http: FlaskClient) -> None:
    missing = error_of(http.get(f"{API}/notifications", headers=AUTH), 400)
    assert (missing["code"], missing["details"]["field"]) == ("VALIDATION_ERROR", "planId")
    unknown = http.get(f"{API}/notifications", query_string={"planId": "nope"}, headers=AUTH)
    assert error_of(unknown, 404)["code"] == "NOT_FOUND"
    plan_id = create(http, plan_body("draft"))
    assert notifications(http, plan_id) == {"items": [], "total": 0, "page": 1, "pageSize": 50}
    bad_page = http.get(
        f"{API}/notifications", query_string={"planId": plan_id, "page": "0"}, headers=AUTH
    )
    assert error_of(bad_page, 400)["details"]["field"] == "page"
    extra = http.get(
        f"{API}/notifications", query_string={"planId": plan_id, "state": "FAILED"}, headers=AUTH
    )
    assert error_of(extra, 400)["details"]["field"] == "state"
    error_of(http.get(f"{API}/notifications", query_string={"planId": plan_id}), 401)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"unread": "maybe"}, "unread"),
        ({"unread": "True"}, "unread"),
        ({"unread": ""}, "unread"),
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "100000"}, "pageSize"),
        ({"recipient": "bob"}, "recipient"),
    ],
)
def test_bad_message_queries_are_refused_by_name(
    http: FlaskClient, params: dict[str, str], field: str
) -> None:
    answer = http.get(f"{API}/messages", query_string=params, headers=AUTH)
    error = error_of(answer, 400)
    assert (error["code"], error["details"]["field"]) == ("VALIDATION_ERROR", field)


@pytest.mark.parametrize("message_id", ["abc", "0", "-1", "1.5", "1e3", "99999999999999999999"])
def test_a_message_id_must_be_a_positive_number(http: FlaskClient, message_id: str) -> None:
    answer = http.post(f"{API}/messages/{message_id}/read", headers=AUTH)
    error = error_of(answer, 400)
    assert (error["code"], error["details"]["field"]) == ("VALIDATION_ERROR", "messageId")


def test_messages_need_a_token(http: FlaskClient) -> None:
    assert error_of(http.get(f"{API}/messages"), 401)["code"] == "UNAUTHENTICATED"
    assert error_of(http.get(f"{API}/messages/unread-count"), 401)["code"] == "UNAUTHENTICATED"
    assert error_of(http.post(f"{API}/messages/1/read"), 401)["code"] == "UNAUTHENTICATED"
    wrong = {"Authorization": "Bearer not-a-token-0123456789abcdef"}
    assert error_of(http.get(f"{API}/messages", headers=wrong), 401)["code"] == "UNAUTHENTICATED"


def test_the_unread_count_follows_the_messages(http: FlaskClient, engine: Engine) -> None:
    assert unread_count(http) == 0
    first = started(http, plan_body("one", "database.url"))
    started(http, plan_body("two", "database.username"))
    assert unread_count(http) == 0  # queued, not yet delivered
    engine.deliver()
    assert unread_count(http) == 2 == inbox(http)["unreadCount"]
    act(http, first, "rollback", {"reason": "no"})
    engine.deliver()
    assert unread_count(http) == 3 == len(inbox(http, unread="true")["items"])
    for message in inbox(http)["items"]:
        assert read(http, message["id"]).status_code == 200
    assert unread_count(http) == 0 == inbox(http)["unreadCount"]
    extra = http.get(f"{API}/messages/unread-count", query_string={"x": "1"}, headers=AUTH)
    assert error_of(extra, 400)["details"]["field"] == "x"


# --- the command line -----------------------------------------------------------------------


def test_notify_from_the_command_line_delivers_what_is_due(
    http: FlaskClient, tmp_path: Path
) -> None:
    first = started(http, plan_body("one", "database.url"))
    second = started(http, plan_body("two", "database.username"))
    queued = {notifications(http, plan_id)["items"][0]["id"] for plan_id in (first, second)}
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'gray.db'}"  # the app's database (make_app)

    def notify() -> Any:
        result = runner.invoke(cli, ["--database-url", url, "--actor", "ops", "notify", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    report = notify()
    assert sorted(report["delivered"]) == sorted(queued)
    assert (report["retrying"], report["failed"], report["errors"]) == ([], [], [])
    assert {n["state"] for p in (first, second) for n in notifications(http, p)["items"]} == {
        "DELIVERED"
    }
    assert inbox(http)["unreadCount"] == 2

    assert notify() == {"delivered": [], "retrying": [], "failed": [], "errors": []}
    assert inbox(http)["total"] == 2

    text = runner.invoke(cli, ["--database-url", url, "notify"])
    assert text.exit_code == 0, text.output
    assert "0 delivered, 0 to retry, 0 failed" in text.output
