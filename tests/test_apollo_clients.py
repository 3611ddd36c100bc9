"""What real Apollo clients need of the Apollo-compatible endpoint beyond the JSON reads: the
caller's address when they send no ``ip`` (through trusted proxies only), a host name as
``ip``, the ``configfiles`` routes, the endpoint at a root of its own, and the access-key
signatures the Python clients compute relative to the URL they were given."""

from __future__ import annotations

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

from grayrelease_core import ManualClock

from .test_apollo_endpoint import APOLLO, BASE, DATABASE, GRAY, PLAN, apollo_app, config, start
from .test_http_api import API, AUTH
from .waiting import eventually

INSIDE = "192.168.1.100"
"""On PLAN's IP whitelist."""
PROXY = "10.9.0.1"


def read(http: FlaskClient, peer: str, url: str = DATABASE, **params: str) -> Any:
    """A read from a client at ``peer`` (the connection's address)."""
    answer = http.get(url, query_string=params, environ_base={"REMOTE_ADDR": peer})
    assert answer.status_code == 200, (answer.status_code, answer.data)
    return answer


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    app = apollo_app(tmp_path, clock, GRAYRELEASE_TRUSTED_PROXIES=["10.9.0.0/16"])
    yield app
    app.extensions["grayrelease"].close(app)


def test_invariant_a_client_without_ip_is_judged_by_its_own_address(app: Flask) -> None:
    http = app.test_client()
    start(http, PLAN)
    assert read(http, INSIDE).json["configurations"] == GRAY
    assert read(http, "10.0.0.1").json["configurations"] == BASE
    # Behind a trusted proxy: the address the proxy saw, the right-most untrusted hop.
    behind = http.get(
        DATABASE,
        headers={"X-Forwarded-For": f"6.6.6.6, {INSIDE}, 10.9.0.2"},
        environ_base={"REMOTE_ADDR": PROXY},
    )
    assert behind.json["configurations"] == GRAY  # type: ignore[index]


def test_invariant_a_caller_cannot_claim_an_address_through_an_untrusted_hop(app: Flask) -> None:
    http = app.test_client()
    start(http, PLAN)
    spoofed = http.get(
        DATABASE, headers={"X-Forwarded-For": INSIDE}, environ_base={"REMOTE_ADDR": "10.0.0.1"}
    )
    assert spoofed.json["configurations"] == BASE  # type: ignore[index]
    # Through the trusted proxy, a hop the client wrote before the proxy's is not believed.
    forged = http.get(
        DATABASE,
        headers={"X-Forwarded-For": f"{INSIDE}, 10.0.0.1"},
        environ_base={"REMOTE_ADDR": PROXY},
    )
    assert forged.json["configurations"] == BASE  # type: ignore[index]


def test_the_rest_config_read_also_falls_back_to_the_address_behind_the_proxy(app: Flask) -> None:
    http = app.test_client()
    start(http, PLAN)
    answer = http.get(
        f"{API}/config/value",
        query_string={
            "appName": "demo-app",
            "environment": "prod",
            "groupName": "database",
            "configKey": "database.url",
            "instanceId": "pod-1",
        },
        headers={"X-Forwarded-For": INSIDE},
        environ_base={"REMOTE_ADDR": PROXY},
    )
    assert answer.json["gray"] is True  # type: ignore[index]


def test_a_host_name_as_ip_names_the_instance_and_the_address_decides(app: Flask) -> None:
    http = app.test_client()
    plan_id = start(http, PLAN)
    assert read(http, INSIDE, ip="host-a").json["configurations"] == GRAY
    assert read(http, "10.0.0.1", ip="host-b").json["configurations"] == BASE
    engine = app.extensions["grayrelease"].state(app).engine
    engine.flush_hits()
    answer = http.get(f"{API}/plan/{plan_id}/instances", headers=AUTH)
    [recorded] = answer.json["items"]  # type: ignore[index]
    assert (recorded["instanceId"], recorded["instanceIp"]) == ("host-a", INSIDE)


def test_configfiles_serve_the_namespace_as_a_properties_file(
    tmp_path: Path, clock: ManualClock
) -> None:
    seed = {
        "demo-app/prod/database/database.url": "jdbc:mysql://db-old:3306/demo",
        "demo-app/prod/database/a key": " x=1:2#3!4\\5\n6",
        "demo-app/prod/database/greeting": "你好",
        "demo-app/prod/app.yaml/content": "server:\n  port: 8080\n",
    }
    app = apollo_app(tmp_path, clock, GRAYRELEASE_SETTINGS={"memory": {"values": seed}})
    try:
        http = app.test_client()
        answer = http.get(f"{APOLLO}/configfiles/demo-app/default/database")
        assert answer.status_code == 200
        assert answer.content_type == "text/plain;charset=UTF-8"
        # As java.util.Properties writes them: escapes of keys and values, UTF-8 as it is.
        assert answer.get_data(as_text=True) == (
            "a\\ key=\\ x\\=1\\:2\\#3\\!4\\\\5\\n6\n"
            "database.url=jdbc\\:mysql\\://db-old\\:3306/demo\n"
            "greeting=你好\n"
        )
        raw = http.get(f"{APOLLO}/configfiles/raw/demo-app/default/database.properties")
        assert raw.get_data(as_text=True) == answer.get_data(as_text=True)
        yaml = http.get(f"{APOLLO}/configfiles/raw/demo-app/default/app.yaml")
        assert yaml.status_code == 200
        assert yaml.content_type == "application/yaml;charset=UTF-8"
        assert yaml.get_data(as_text=True) == "server:\n  port: 8080\n"
        for missing in (
            "configfiles/demo-app/default/nothing",
            "configfiles/raw/demo-app/default/x.json",
        ):
            assert http.get(f"{APOLLO}/{missing}").status_code == 404
    finally:
        app.extensions["grayrelease"].close(app)


def test_configfiles_carry_the_gray_values_of_the_clients_plan(app: Flask) -> None:
    http = app.test_client()
    start(http, PLAN)
    inside = read(http, "10.0.0.1", f"{APOLLO}/configfiles/demo-app/default/database", ip=INSIDE)
    assert "database.url=jdbc\\:mysql\\://db-new\\:3306/demo\n" in inside.get_data(as_text=True)
    outside = read(http, "10.0.0.1", f"{APOLLO}/configfiles/demo-app/default/database")
    assert "db-old" in outside.get_data(as_text=True)


def test_one_environment_at_the_apps_root_as_apollos_config_service(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = apollo_app(
        tmp_path, clock, GRAYRELEASE_APOLLO_PREFIX="", GRAYRELEASE_APOLLO_ENVIRONMENT="prod"
    )
    try:
        http = app.test_client()
        start(http, PLAN)
        assert (
            config(http, "/configs/demo-app/default/database", ip=INSIDE)["configurations"] == GRAY
        )
        [service] = http.get("/services/config").json  # type: ignore[misc]
        assert service["homepageUrl"] == "http://localhost/"
        assert http.get(DATABASE).status_code == 404  # not also at the default root
    finally:
        app.extensions["grayrelease"].close(app)


@pytest.mark.parametrize(
    "bad",
    [
        {"GRAYRELEASE_APOLLO_PREFIX": "apollo/"},
        {"GRAYRELEASE_APOLLO_ENVIRONMENT": "a/b"},
        {"GRAYRELEASE_TRUSTED_PROXIES": ["not-a-network"]},
    ],
)
def test_bad_endpoint_settings_name_the_setting(
    tmp_path: Path, clock: ManualClock, bad: dict[str, Any]
) -> None:
    from grayrelease_core import ValidationError

    with pytest.raises(ValidationError) as raised:
        apollo_app(tmp_path, clock, **bad)
    assert raised.value.details["field"] == next(iter(bad))


def signed(app_id: str, secret: str, path: str) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000))
    signature = access_signature(secret, timestamp, path)
    return {"Authorization": f"Apollo {app_id}:{signature}", "Timestamp": timestamp}


ROOTED = "/apollo"
"""The endpoint at a root of its own, serving one environment."""


def rooted_app(tmp_path: Path, clock: ManualClock, **config: Any) -> Flask:
    return apollo_app(
        tmp_path,
        clock,
        GRAYRELEASE_APOLLO_PREFIX=ROOTED,
        GRAYRELEASE_APOLLO_ENVIRONMENT="prod",
        GRAYRELEASE_APOLLO_ACCESS_KEYS={"demo-app": "s3cret"},
        **config,
    )


def test_a_signature_of_the_path_after_the_clients_url_is_accepted_at_an_own_root(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = rooted_app(tmp_path, clock)
    try:
        http = app.test_client()
        query = urllib.parse.urlencode({"ip": "10.0.0.1"})
        relative = f"/configs/demo-app/default/database?{query}"
        full = f"{ROOTED}{relative}"
        for path in (relative, full):
            assert http.get(full, headers=signed("demo-app", "s3cret", path)).status_code == 200
        # Still a signature of this request: another path or another secret is refused.
        other = "/configs/demo-app/default/other?" + query
        assert http.get(full, headers=signed("demo-app", "s3cret", other)).status_code == 401
        assert http.get(full, headers=signed("demo-app", "wrong", relative)).status_code == 401
    finally:
        app.extensions["grayrelease"].close(app)


def test_invariant_a_signature_cannot_be_replayed_into_another_environment(
    tmp_path: Path, clock: ManualClock
) -> None:
    """With the environment in the path, only a signature that covers it is accepted."""
    app = apollo_app(tmp_path, clock, GRAYRELEASE_APOLLO_ACCESS_KEYS={"demo-app": "s3cret"})
    try:
        http = app.test_client()
        query = urllib.parse.urlencode({"ip": "10.0.0.1"})
        relative = f"/configs/demo-app/default/database?{query}"
        seen_in_dev = signed("demo-app", "s3cret", relative)
        assert http.get(f"{DATABASE}?{query}", headers=seen_in_dev).status_code == 401
        full = signed("demo-app", "s3cret", f"{DATABASE}?{query}")
        assert http.get(f"{DATABASE}?{query}", headers=full).status_code == 200
        dev = DATABASE.replace("/prod/", "/dev/")
        assert http.get(f"{dev}?{query}", headers=full).status_code == 401
    finally:
        app.extensions["grayrelease"].close(app)


def test_apollo_client_python_with_an_access_key_follows_a_plan(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyPI's apollo-client-python 0.2.5 signs only the path after its config URL."""
    from apollo import ApolloClient
    from werkzeug.serving import make_server

    monkeypatch.setenv("HOME", str(tmp_path))  # its file cache goes under ~/data/apollo
    app = rooted_app(tmp_path, clock, GRAYRELEASE_APOLLO_HOLD=2.0)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    client: Any = None
    try:
        client = ApolloClient(
            app_id="demo-app",
            cluster="default",
            config_url=f"http://127.0.0.1:{server.server_port}{ROOTED}",
            secret="s3cret",
            namespaces=["database"],
            enable_dotenv=False,
            enable_scheduled_updates=False,
            enable_long_pool_updates=True,  # the signed long poll, then a signed read
            auto_update_enabled=False,
        )
        assert client.get_value("database.url", namespace="database") == BASE["database.url"]
        # It sends its own address as ip: put that address on the whitelist.
        whitelist = {**PLAN, "grayRules": {"ipWhitelist": [client.ip]}}
        start(app.test_client(), whitelist)
        client.start()
        eventually(
            lambda: client.get_value("database.url", namespace="database") == GRAY["database.url"]
        )
    finally:
        if client is not None:
            client.stop()
        server.shutdown()
        serving.join()
        app.extensions["grayrelease"].close(app)
