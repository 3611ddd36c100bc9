"""The Apollo-compatible config service of the Flask adapter, over HTTP: what an unmodified
Apollo client reads, with the gray values of the live plans laid over the namespace."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from grayrelease_adapters.apollo.client import access_signature

from grayrelease_core import ConfigRef, ManualClock, Settings, hookimpl

from .test_http_api import API, AUTH, act, make_app
from .waiting import eventually

APOLLO = f"{API}/apollo/prod"
DATABASE = f"{APOLLO}/configs/demo-app/default/database"
SEED = {
    "demo-app/prod/database/database.url": "jdbc:mysql://db-old:3306/demo",
    "demo-app/prod/database/database.username": "app1",
    "demo-app/prod/database/database.maxPoolSize": "10",
}
PLAN = {
    "planName": "数据库配置灰度发布",
    "appName": "demo-app",
    "environment": "prod",
    "groupName": "database",
    "configKeys": ["database.url", "database.username"],
    "grayStrategy": "IP_WHITELIST",
    "grayRules": {"ipWhitelist": ["192.168.1.100", "192.168.1.101"]},
    "grayValues": {"database.url": "jdbc:mysql://db-new:3306/demo", "database.username": "app2"},
}
BASE = {
    "database.url": "jdbc:mysql://db-old:3306/demo",
    "database.username": "app1",
    "database.maxPoolSize": "10",
}
GRAY = {**BASE, "database.url": "jdbc:mysql://db-new:3306/demo", "database.username": "app2"}


def apollo_app(tmp_path: Path, clock: ManualClock, **config: Any) -> Flask:
    defaults = {
        "GRAYRELEASE_SETTINGS": {"memory": {"values": SEED}},
        "GRAYRELEASE_APOLLO_HOLD": 0.3,
    }
    return make_app(tmp_path, clock, **{**defaults, **config})


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    app = apollo_app(tmp_path, clock)
    yield app
    app.extensions["grayrelease"].close(app)


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


def start(http: FlaskClient, body: dict[str, Any]) -> str:
    created = http.post(f"{API}/plan", json=body, headers=AUTH)
    assert created.status_code == 201, created.json
    plan_id: str = created.json["planId"]  # type: ignore[index]
    act(http, plan_id, "start")
    return plan_id


def config(http: FlaskClient, url: str = DATABASE, **params: str) -> Any:
    answer = http.get(url, query_string=params)
    assert answer.status_code == 200, (answer.status_code, answer.data)
    return answer.json


def poll(http: FlaskClient, ids: dict[str, int], app_id: str = "demo-app") -> Any:
    notifications = json.dumps([{"namespaceName": n, "notificationId": i} for n, i in ids.items()])
    return http.get(
        f"{APOLLO}/notifications/v2",
        query_string={"appId": app_id, "cluster": "default", "notifications": notifications},
    )


def test_a_namespace_reads_as_from_apollo_and_the_whitelisted_ip_gets_the_gray_values(
    http: FlaskClient,
) -> None:
    before = config(http, ip="192.168.1.100")
    assert before["configurations"] == BASE
    assert (before["appId"], before["cluster"], before["namespaceName"]) == (
        "demo-app",
        "default",
        "database",
    )
    start(http, PLAN)
    assert config(http, ip="192.168.1.100")["configurations"] == GRAY
    assert config(http, ip="10.0.0.1")["configurations"] == BASE
    # No ip: the caller's address (the test client's 127.0.0.1) is judged, as in Apollo.
    assert config(http)["configurations"] == BASE
    # A properties namespace may be asked for with its suffix, as Apollo allows.
    suffixed = config(http, f"{DATABASE}.properties", ip="192.168.1.101")
    assert suffixed["configurations"] == GRAY
    assert suffixed["namespaceName"] == "database.properties"
    flat = http.get(
        f"{APOLLO}/configfiles/json/demo-app/default/database", query_string={"ip": "192.168.1.101"}
    )
    assert flat.json == GRAY


def test_the_release_key_gives_304_until_what_this_client_sees_changes(
    http: FlaskClient,
) -> None:
    first = config(http, ip="192.168.1.100")
    same = http.get(
        DATABASE, query_string={"ip": "192.168.1.100", "releaseKey": first["releaseKey"]}
    )
    assert same.status_code == 304
    start(http, PLAN)
    outside = http.get(DATABASE, query_string={"ip": "10.0.0.1", "releaseKey": first["releaseKey"]})
    assert outside.status_code == 304  # its view did not change
    inside = http.get(
        DATABASE, query_string={"ip": "192.168.1.100", "releaseKey": first["releaseKey"]}
    )
    assert inside.status_code == 200
    assert inside.json["releaseKey"] != first["releaseKey"]  # type: ignore[index]


def test_a_label_plan_matches_the_clients_apollo_label(http: FlaskClient) -> None:
    start(
        http,
        {**PLAN, "grayStrategy": "LABEL", "grayRules": {"labels": {"apollo.label": ["blue"]}}},
    )
    assert config(http, ip="10.0.0.1", label="blue")["configurations"] == GRAY
    assert config(http, ip="10.0.0.1", label="green")["configurations"] == BASE


def test_a_percentage_plan_splits_clients_by_address_and_records_who_got_it(
    app: Flask, http: FlaskClient
) -> None:
    plan_id = start(http, {**PLAN, "grayStrategy": "PERCENTAGE", "grayRules": {"percentage": 30}})
    gray = [
        f"10.0.1.{n}"
        for n in range(1, 201)
        if config(http, ip=f"10.0.1.{n}")["configurations"] == GRAY
    ]
    assert 30 < len(gray) < 90  # 30% of 200, give or take
    engine = app.extensions["grayrelease"].state(app).engine
    engine.flush_hits()
    answer = http.get(
        f"{API}/plan/{plan_id}/instances", query_string={"pageSize": 100}, headers=AUTH
    )
    recorded = {i["instanceIp"] for i in answer.json["items"]}  # type: ignore[index]
    assert answer.json["total"] == len(gray)  # type: ignore[index]
    assert recorded <= set(gray)


def test_the_notification_id_changes_when_a_plan_starts_or_the_namespace_is_published(
    app: Flask, http: FlaskClient
) -> None:
    first = poll(http, {"database": -1})
    assert first.status_code == 200
    [entry] = first.json
    known = entry["notificationId"]
    assert entry["namespaceName"] == "database"
    assert entry["messages"]["details"] == {"demo-app+default+database": known}
    held = time.monotonic()
    assert poll(http, {"database": known}).status_code == 304
    assert time.monotonic() - held >= 0.25  # held for GRAYRELEASE_APOLLO_HOLD
    start(http, PLAN)
    after_start = poll(http, {"database": known})
    assert after_start.status_code == 200
    started = after_start.json[0]["notificationId"]
    assert started != known
    engine = app.extensions["grayrelease"].state(app).engine
    engine.backend.publish(ConfigRef("demo-app", "prod", "database", "x"), "1", actor="ops")
    assert poll(http, {"database": started}).json[0]["notificationId"] != started


def test_a_poll_is_answered_when_a_plan_starts_during_the_hold(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = apollo_app(tmp_path, clock, GRAYRELEASE_APOLLO_HOLD=5.0)
    try:
        http = app.test_client()
        known = poll(http, {"database": -1}).json[0]["notificationId"]
        answers: list[Any] = []
        waiter = threading.Thread(target=lambda: answers.append(poll(http, {"database": known})))
        began = time.monotonic()
        waiter.start()
        time.sleep(0.2)
        start(app.test_client(), PLAN)
        waiter.join(5)
        assert answers
        assert answers[0].status_code == 200
        assert time.monotonic() - began < 4  # woken, not timed out
    finally:
        app.extensions["grayrelease"].close(app)


def test_the_meta_server_points_clients_at_this_service(http: FlaskClient) -> None:
    [service] = http.get(f"{APOLLO}/services/config", query_string={"appId": "demo-app"}).json  # type: ignore[misc]
    assert service["homepageUrl"] == f"http://localhost{APOLLO}/"


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        (DATABASE, {"ip": "host\x01a"}, "ip"),
        (DATABASE, {"ip": "h" * 129}, "ip"),
        (f"{APOLLO}/notifications/v2", {"appId": "a", "cluster": "default"}, "notifications"),
        (
            f"{APOLLO}/notifications/v2",
            {"appId": "a", "cluster": "default", "notifications": "{"},
            "notifications",
        ),
        (
            f"{APOLLO}/notifications/v2",
            {"appId": "a", "cluster": "default", "notifications": "[]"},
            "notifications",
        ),
        (
            f"{APOLLO}/notifications/v2",
            {
                "appId": "a",
                "cluster": "default",
                "notifications": '[{"namespaceName": "x", "notificationId": "1"}]',
            },
            "notifications",
        ),
        (f"{APOLLO}/notifications/v2", {"cluster": "default", "notifications": "[]"}, "appId"),
    ],
)
def test_bad_requests_are_400s_naming_the_parameter(
    http: FlaskClient, url: str, params: dict[str, str], field: str
) -> None:
    answer = http.get(url, query_string=params)
    assert answer.status_code == 400
    assert answer.json["error"]["details"]["field"] == field  # type: ignore[index]


def test_parameters_apollo_clients_may_add_are_ignored_as_apollo_ignores_them(
    http: FlaskClient,
) -> None:
    params = {"ip": "10.0.0.1", "dataCenter": "hz", "messages": "{}", "newerFlag": "1"}
    assert config(http, **params)["configurations"] == BASE


def test_a_namespace_with_nothing_in_it_is_a_404_as_in_apollo(http: FlaskClient) -> None:
    answer = http.get(f"{APOLLO}/configs/demo-app/default/nothing-here")
    assert answer.status_code == 404
    assert answer.json["status"] == 404  # type: ignore[index]


def test_an_app_with_an_access_key_must_sign_its_requests(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = apollo_app(
        tmp_path,
        clock,
        GRAYRELEASE_APOLLO_ACCESS_KEYS={"demo-app": "s3cret"},
        GRAYRELEASE_CLIENT_TOKENS=["client-token-0123456789"],
    )
    try:
        http = app.test_client()
        query = urllib.parse.urlencode({"ip": "10.0.0.1"})
        path = f"{DATABASE}?{query}"

        def signed(secret: str, stamp: int) -> dict[str, str]:
            timestamp = str(stamp)
            signature = access_signature(secret, timestamp, path)
            return {"Authorization": f"Apollo demo-app:{signature}", "Timestamp": timestamp}

        now = int(time.time() * 1000)
        assert http.get(path).status_code == 401
        assert http.get(path, headers=signed("wrong", now)).status_code == 401
        assert http.get(path, headers=signed("s3cret", now - 120_000)).status_code == 401
        good = http.get(path, headers=signed("s3cret", now))
        assert good.status_code == 200
        assert good.json["configurations"] == BASE  # type: ignore[index]
        # Reads are closed by client tokens: an app without an access key cannot read here.
        other = http.get(f"{APOLLO}/configs/other-app/default/application")
        assert other.status_code == 401
    finally:
        app.extensions["grayrelease"].close(app)


class ListlessBackend:
    """A host's backend that can read a key but not list a group."""

    name = "listless"

    def get(self, ref: ConfigRef) -> str | None:
        return None

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        """Nothing is kept."""

    def refresh(self) -> None:
        """Nothing to pick up."""

    def close(self) -> None:
        """Nothing to release."""


class ListlessPlugin:
    @hookimpl
    def grayrelease_make_backend(self, settings: Settings) -> ListlessBackend | None:
        return ListlessBackend() if settings.backend == "listless" else None


def test_a_backend_that_cannot_list_a_namespace_says_so(tmp_path: Path, clock: ManualClock) -> None:
    from grayrelease_adapters.flask import GrayRelease

    app = Flask("host")
    app.config.update(
        GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path / 'gray.db'}",
        GRAYRELEASE_BACKGROUND_SYNC=False,
        GRAYRELEASE_BACKEND="listless",
    )
    GrayRelease(app, clock=clock, plugins=(ListlessPlugin(),), load_entrypoints=False)
    try:
        answer = app.test_client().get(DATABASE)
        assert answer.status_code == 500
        assert "cannot list a namespace" in answer.json["error"]["message"]  # type: ignore[index]
    finally:
        app.extensions["grayrelease"].close(app)


def test_the_sql_backend_serves_apollo_clients(tmp_path: Path, clock: ManualClock) -> None:
    """``grayrelease serve`` (so ``make run``) runs on the sql backend: it must list a group."""
    app = make_app(tmp_path, clock, GRAYRELEASE_BACKEND="sql")
    try:
        engine = app.extensions["grayrelease"].state(app).engine
        for key, value in BASE.items():
            engine.backend.publish(
                ConfigRef("demo-app", "prod", "database", key), value, actor="ops"
            )
        engine.backend.publish(ConfigRef("demo-app", "prod", "other", "x"), "1", actor="ops")
        http = app.test_client()
        assert config(http, ip="192.168.1.100")["configurations"] == BASE
        known = poll(http, {"database": -1}).json[0]["notificationId"]
        start(http, PLAN)
        assert config(http, ip="192.168.1.100")["configurations"] == GRAY
        assert poll(http, {"database": known}).status_code == 200
    finally:
        app.extensions["grayrelease"].close(app)


def test_through_the_apollo_backend_clients_see_the_release_and_the_plan_over_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    import grayrelease_adapters.apollo as apollo_plugin
    from grayrelease_adapters.flask import GrayRelease

    from .fake_apollo import FakeApollo

    with FakeApollo(tokens={"t0k3n": ["demo-app"]}, config_env="PRO", hold=0.3) as apollo:
        apollo.create_namespace("PRO", "demo-app", "default", "database")
        for key, value in BASE.items():
            apollo.set_item("PRO", "demo-app", "default", "database", key, value)
        apollo.release("PRO", "demo-app", "default", "database")
        app = Flask("host")
        app.config.update(
            GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path / 'gray.db'}",
            GRAYRELEASE_BACKGROUND_SYNC=False,
            GRAYRELEASE_TOKENS={"alice-token-0123456789abcdef": "alice"},
            GRAYRELEASE_BACKEND="apollo",
            GRAYRELEASE_APOLLO_HOLD=0.3,
            GRAYRELEASE_SETTINGS={
                "apollo": {
                    "portal": apollo.base_url,
                    "token": "t0k3n",
                    "envs": {"prod": "PRO"},
                    "config_services": {"PRO": apollo.base_url},
                }
            },
        )
        GrayRelease(app, clock=clock, plugins=(apollo_plugin,), load_entrypoints=False)
        try:
            http = app.test_client()
            known = poll(http, {"database": -1}).json[0]["notificationId"]
            plan_id = start(http, PLAN)
            assert config(http, ip="192.168.1.100")["configurations"] == GRAY
            assert config(http, ip="10.0.0.1")["configurations"] == BASE
            assert poll(http, {"database": known}).status_code == 200
            act(http, plan_id, "complete")
            assert apollo.released("PRO", "demo-app", "default", "database") == GRAY
            # Completed: everyone reads the release, which now holds the gray values.
            engine = app.extensions["grayrelease"].state(app).engine
            engine.sync()
            assert config(http, ip="10.0.0.1")["configurations"] == GRAY
        finally:
            app.extensions["grayrelease"].close(app)


def test_an_unmodified_apollo_client_follows_a_plan_through_long_polling(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A second opinion on the wire format: PyPI's apollo-config-client, pointed at this
    endpoint as at Apollo's config service, learns of the plan by its long poll."""
    from apollo_config import ApolloClient  # type: ignore[import-untyped]
    from werkzeug.serving import make_server

    app = apollo_app(tmp_path, clock, GRAYRELEASE_APOLLO_HOLD=2.0)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    base = f"http://127.0.0.1:{server.server_port}{APOLLO}"

    def client(ip: str, name: str) -> Any:
        return ApolloClient(
            app_id="demo-app",
            config_url=base,
            namespaces=["database"],
            client_ip=ip,
            cache_dir=str(tmp_path / name),
            poll_timeout=5,
            poll_interval=0.05,
        )

    inside, outside = client("192.168.1.100", "in"), client("10.0.0.1", "out")
    try:
        for started in (inside, outside):
            started.start()
        assert inside.get_configs("database") == BASE
        plan_id = start(app.test_client(), PLAN)
        eventually(lambda: inside.get_configs("database") == GRAY)
        act(app.test_client(), plan_id, "rollback")
        eventually(lambda: inside.get_configs("database") == BASE)
        assert outside.get_configs("database") == BASE
    finally:
        for stopped in (inside, outside):
            stopped.stop()
        server.shutdown()
        serving.join()
        app.extensions["grayrelease"].close(app)
