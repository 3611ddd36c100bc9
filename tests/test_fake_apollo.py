"""The loopback Apollo fake answers as an Apollo 2.x portal and config service do.

Plain urllib on one side, so that these tests check the fake and not a client of it; the last
tests let a third-party Python client (apollo-config-client 0.1.2) read through it as a second
opinion on the config service's wire format.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from grayrelease_core import ManualClock

from .fake_apollo import FakeApollo, apollo_signature
from .loopback import Answer, send

TOKEN = "c0ffee"
OTHER_TOKEN = "other-team"
APP = "demo-app"
LOCKED_APP = "locked-app"
SECRET = "s3cr3t"
NS = f"/openapi/v1/envs/DEV/apps/{APP}/clusters/default/namespaces/application"
JSON = "application/json;charset=UTF-8"
GSON_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")
_UNSET: Any = object()


def call(
    fake: FakeApollo,
    method: str,
    path: str,
    params: Mapping[str, str] | None = None,
    *,
    body: Any = _UNSET,
    raw: bytes | None = None,
    content_type: str | None = JSON,
    token: str | None = TOKEN,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Answer:
    url = fake.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = token
    data = raw if raw is not None else None if body is _UNSET else json.dumps(body).encode()
    if data is not None and content_type is not None:
        sent["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    return send(request, timeout)


def create(fake: FakeApollo, key: str, value: str | None = "v", **fields: Any) -> Answer:
    item = {"key": key, "value": value, "dataChangeCreatedBy": "apollo", **fields}
    return call(fake, "POST", f"{NS}/items", body={k: v for k, v in item.items() if v is not None})


def update(fake: FakeApollo, key: str, value: str, create: bool = False, **fields: Any) -> Answer:
    item = {"key": key, "value": value, "dataChangeLastModifiedBy": "apollo", **fields}
    params = {"createIfNotExists": "true"} if create else None
    return call(fake, "PUT", f"{NS}/items/{key}", params, body=item)


def publish(fake: FakeApollo, title: str = "first", **fields: Any) -> Answer:
    body = {"releaseTitle": title, "releasedBy": "apollo", **fields}
    return call(fake, "POST", f"{NS}/releases", body=body)


def rollback(fake: FakeApollo, release_id: object, token: str = TOKEN, **params: str) -> Answer:
    path = f"/openapi/v1/envs/DEV/releases/{release_id}/rollback"
    return call(fake, "PUT", path, {"operator": "apollo", **params}, token=token)


def configs(
    fake: FakeApollo,
    namespace: str = "application",
    cluster: str = "default",
    app: str = APP,
    **params: str,
) -> Answer:
    return call(fake, "GET", f"/configs/{app}/{cluster}/{namespace}", params, token=None)


def poll(
    fake: FakeApollo,
    *entries: tuple[str, int],
    cluster: str = "default",
    app: str = APP,
    timeout: float = 5.0,
) -> Answer:
    listed = [{"namespaceName": name, "notificationId": number} for name, number in entries]
    params = {"appId": app, "cluster": cluster, "notifications": json.dumps(listed)}
    return call(fake, "GET", "/notifications/v2", params, token=None, timeout=timeout)


def error_of(answer: Answer) -> tuple[int, Any, str]:
    """``(HTTP status, body status, message)`` of an Apollo error, checking its shape.

    The body status is a float when the admin service raised the error (``404.0``) and an int
    when the portal or the config service did: compare it with ``repr`` or its type.
    """
    body = answer.json()
    assert {"status", "timestamp", "exception"} <= set(body)
    assert set(body) <= {"status", "message", "timestamp", "exception"}
    assert answer.headers["Content-Type"] == JSON
    return answer.status, body["status"], body.get("message", "")


def released(fake: FakeApollo, value: str = "10") -> None:
    fake.set_item("DEV", APP, "default", "application", "ratio", value)
    fake.release("DEV", APP, "default", "application")


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeApollo]:
    tokens = {TOKEN: [APP, LOCKED_APP], OTHER_TOKEN: ["other-app"]}
    with FakeApollo(
        tokens=tokens,
        users=("apollo", "alice"),
        clock=clock,
        hold=0.3,
        access_keys={LOCKED_APP: SECRET},
    ) as server:
        server.create_namespace("DEV", APP, "default", "application")
        yield server


# --- Open API: auth ------------------------------------------------------------------------------


def test_open_api_without_a_known_token_is_401_springs_error_page(fake: FakeApollo) -> None:
    for token in (None, "", "nope"):
        answer = call(fake, "GET", NS, token=token)
        assert answer.status == 401
        page = answer.json()
        assert (page["status"], page["error"], page["path"]) == (401, "Unauthorized", NS)
        assert GSON_DATE.fullmatch(page["timestamp"])
        assert "message" not in page


def test_any_token_may_read_but_only_its_apps_may_be_changed(fake: FakeApollo) -> None:
    fake.set_item("DEV", APP, "default", "application", "k", "v")
    assert call(fake, "GET", NS, token=OTHER_TOKEN).status == 200
    assert call(fake, "GET", f"{NS}/items/k", token=OTHER_TOKEN).status == 200
    attempts = [
        ("POST", f"{NS}/items", None, {"key": "x", "value": "1", "dataChangeCreatedBy": "apollo"}),
        ("PUT", f"{NS}/items/k", None, {"key": "k", "dataChangeLastModifiedBy": "apollo"}),
        ("DELETE", f"{NS}/items/k", {"operator": "apollo"}, _UNSET),
        ("POST", f"{NS}/releases", None, {"releaseTitle": "t", "releasedBy": "apollo"}),
    ]
    for method, path, params, body in attempts:
        answer = call(fake, method, path, params, body=body, token=OTHER_TOKEN)
        assert error_of(answer) == (403, 403, "Access is denied")
        assert answer.json()["exception"].endswith("AccessDeniedException")
    assert fake.items("DEV", APP, "default", "application") == {"k": "v"}
    assert fake.releases("DEV", APP, "default", "application") == []


# --- Open API: namespaces, envs, routing --------------------------------------------------------


def test_a_namespace_not_created_is_404_with_apollos_message(fake: FakeApollo) -> None:
    missing = "namespace not found for appId:demo-app clusterName:default namespaceName:nope"
    base = NS.replace("application", "nope")
    # The admin service raised it; the portal re-parsed the body with Gson: status 404.0.
    answer = call(fake, "GET", base)
    assert error_of(answer) == (404, 404.0, missing)
    assert '"status":404.0' in answer.body
    item = {"key": "k", "value": "v", "dataChangeCreatedBy": "apollo"}
    assert error_of(call(fake, "POST", f"{base}/items", body=item)) == (404, 404.0, missing)
    assert error_of(call(fake, "GET", f"{base}/items/k")) == (404, 404.0, missing)
    other_app = NS.replace(APP, "no-such-app")
    assert error_of(call(fake, "GET", other_app))[0] == 404
    with pytest.raises(LookupError, match="namespace not found"):
        fake.set_item("DEV", APP, "default", "nope", "k", "v")


def test_the_env_is_case_insensitive_and_an_unknown_env_is_500(fake: FakeApollo) -> None:
    assert call(fake, "GET", NS.replace("/DEV/", "/dev/")).status == 200
    answer = call(fake, "GET", NS.replace("/DEV/", "/prod/"))
    assert error_of(answer) == (500, 500, "PROD not exist")
    assert answer.json()["exception"] == "java.lang.IllegalArgumentException"
    fake.create_namespace("pro", APP, "default", "application")
    assert call(fake, "GET", NS.replace("/DEV/", "/Pro/")).status == 200


def test_get_namespace_lists_its_items_in_line_order(fake: FakeApollo) -> None:
    for key in ("b", "a", "c"):
        fake.set_item("DEV", APP, "default", "application", key, key.upper())
    fake.set_item("DEV", APP, "default", "application", "b", "B2", comment="edited")
    answer = call(fake, "GET", NS)
    assert (answer.status, answer.headers["Content-Type"]) == (200, JSON)
    namespace = answer.json()
    assert namespace["appId"] == APP
    assert (namespace["clusterName"], namespace["namespaceName"]) == ("default", "application")
    assert (namespace["format"], namespace["isPublic"]) == ("properties", False)
    assert [(i["key"], i["value"]) for i in namespace["items"]] == [
        ("b", "B2"),
        ("a", "A"),
        ("c", "C"),
    ]
    assert namespace["items"][0]["comment"] == "edited"
    assert "comment" not in namespace["items"][1]  # Gson leaves nulls out


def test_unknown_paths_are_404_and_wrong_methods_400(fake: FakeApollo) -> None:
    assert call(fake, "GET", f"{NS}/branches").status == 404
    assert call(fake, "GET", "/openapi/v2/whatever").status == 404
    answer = call(fake, "PATCH", f"{NS}/items/k", body={})
    assert error_of(answer) == (400, 400, "Request method 'PATCH' not supported")
    assert isinstance(answer.json()["status"], int)  # raised in the portal itself
    assert error_of(call(fake, "DELETE", f"{NS}/releases"))[0] == 400
    assert call(fake, "GET", "/nowhere", token=None).status == 404


def test_post_and_put_bodies_must_be_json(fake: FakeApollo) -> None:
    item = json.dumps({"key": "k", "value": "v", "dataChangeCreatedBy": "apollo"}).encode()
    answer = call(fake, "POST", f"{NS}/items", raw=item, content_type="text/plain")
    # Apollo's handler turns Spring's HttpMediaTypeNotSupportedException into 400, not 415.
    assert error_of(answer) == (400, 400, "Content type 'text/plain' not supported")
    assert answer.json()["exception"].endswith("HttpMediaTypeNotSupportedException")
    form = call(fake, "POST", f"{NS}/items", raw=item, content_type=None)  # urllib's default
    assert error_of(form)[2] == "Content type 'application/x-www-form-urlencoded' not supported"
    connection = http.client.HTTPConnection(fake.address, timeout=5)
    try:  # no Content-Type at all: Spring takes it for application/octet-stream
        connection.request("POST", f"{NS}/items", body=item, headers={"Authorization": TOKEN})
        bare = connection.getresponse()
        assert (bare.status, json.loads(bare.read())["message"]) == (
            400,
            "Content type 'application/octet-stream' not supported",
        )
    finally:
        connection.close()
    broken = call(fake, "POST", f"{NS}/items", raw=b"{nope")
    assert error_of(broken)[0] == 500
    assert broken.json()["exception"].endswith("HttpMessageNotReadableException")
    assert error_of(call(fake, "POST", f"{NS}/items", raw=b"[]"))[0] == 500
    assert (
        call(fake, "POST", f"{NS}/items", raw=item, content_type="application/json").status == 200
    )
    assert fake.items("DEV", APP, "default", "application") == {"k": "v"}


# --- Open API: items -----------------------------------------------------------------------------


def test_create_then_get_an_item(fake: FakeApollo) -> None:
    created = create(fake, "timeout", "30", comment="seconds")
    assert created.status == 200
    item = created.json()
    assert (item["key"], item["value"], item["comment"]) == ("timeout", "30", "seconds")
    assert item["dataChangeCreatedBy"] == item["dataChangeLastModifiedBy"] == "apollo"
    assert GSON_DATE.fullmatch(item["dataChangeCreatedTime"])
    assert call(fake, "GET", f"{NS}/items/timeout").json() == item
    assert fake.items("DEV", APP, "default", "application") == {"timeout": "30"}
    assert fake.released("DEV", APP, "default", "application") is None


def test_an_absent_item_is_404(fake: FakeApollo) -> None:
    message = (
        "item not found for appId:demo-app clusterName:default namespaceName:application "
        "itemKey:nope"
    )
    assert error_of(call(fake, "GET", f"{NS}/items/nope")) == (404, 404.0, message)


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"key": ""}, 400, "key and dataChangeCreatedBy should not be null or empty"),
        ({"dataChangeCreatedBy": None}, 400, "key and dataChangeCreatedBy should not be null"),
        ({"dataChangeCreatedBy": "bob"}, 400, "User bob doesn't exist!"),
        ({"comment": "c" * 257}, 400, "Comment length should not exceed 256 characters"),
        ({"key": "k" * 129}, 400, "key too long. length limit:128"),
        ({"value": "v" * 20001}, 400, "value too long. length limit:20000"),
        ({"value": None}, 500, "could not execute statement"),
    ],
)
def test_create_item_refusals(
    fake: FakeApollo, fields: dict[str, Any], status: int, message: str
) -> None:
    item = {"key": "k", "value": "v", "dataChangeCreatedBy": "apollo", **fields}
    body = {name: value for name, value in item.items() if value is not None}
    answer = call(fake, "POST", f"{NS}/items", body=body)
    assert answer.status == status
    assert answer.json()["message"].startswith(message)
    assert fake.items("DEV", APP, "default", "application") == {}


def test_create_item_limits_are_inclusive_and_a_key_of_spaces_is_a_key(fake: FakeApollo) -> None:
    assert create(fake, "k" * 128, "v" * 20000, comment="c" * 256).status == 200
    assert create(fake, "   ").status == 200  # Apollo checks for empty, not blank


def test_creating_an_existing_key_is_400(fake: FakeApollo) -> None:
    assert create(fake, "k").status == 200
    answer = create(fake, "k", "other")
    assert error_of(answer) == (400, 400.0, "item already exists for itemKey:k")
    assert isinstance(answer.json()["status"], float)  # raised in the admin service
    assert fake.items("DEV", APP, "default", "application") == {"k": "v"}


def test_put_updates_an_item_in_place(fake: FakeApollo, clock: ManualClock) -> None:
    create(fake, "a")
    create(fake, "b")
    clock.advance(60)
    answer = update(fake, "a", "A2", comment="new", dataChangeLastModifiedBy="alice")
    assert (answer.status, answer.body) == (200, "")
    item = call(fake, "GET", f"{NS}/items/a").json()
    assert (item["value"], item["comment"], item["dataChangeLastModifiedBy"]) == (
        "A2",
        "new",
        "alice",
    )
    assert item["dataChangeCreatedBy"] == "apollo"
    assert item["dataChangeCreatedTime"] != item["dataChangeLastModifiedTime"]
    assert list(fake.items("DEV", APP, "default", "application")) == ["a", "b"]


def test_put_of_an_absent_key_is_404_unless_create_if_not_exists(fake: FakeApollo) -> None:
    assert error_of(update(fake, "new", "1"))[:2] == (404, 404.0)
    # Creation takes dataChangeCreatedBy from the body: without it the NOT NULL column refuses.
    assert error_of(update(fake, "new", "1", create=True))[0] == 500
    answer = update(fake, "new", "1", create=True, dataChangeCreatedBy="alice")
    assert answer.status == 200
    assert call(fake, "GET", f"{NS}/items/new").json()["dataChangeCreatedBy"] == "alice"
    assert update(fake, "new", "2", create=True).status == 200  # exists now: an update
    # Spring's boolean conversion also takes yes/on/1.
    item = {"key": "yes", "value": "3", "dataChangeLastModifiedBy": "apollo"}
    item["dataChangeCreatedBy"] = "apollo"
    assert (
        call(fake, "PUT", f"{NS}/items/yes", {"createIfNotExists": "yes"}, body=item).status == 200
    )
    assert fake.items("DEV", APP, "default", "application") == {"new": "2", "yes": "3"}


@pytest.mark.parametrize(
    ("body", "params", "status", "message"),
    [
        ({"key": "other"}, {}, 400, "Key in path and payload is not consistent"),
        ({"key": ""}, {}, 400, "key and dataChangeLastModifiedBy can not be empty"),
        ({"dataChangeLastModifiedBy": ""}, {}, 400, "key and dataChangeLastModifiedBy"),
        ({"dataChangeLastModifiedBy": "bob"}, {}, 400, "user(dataChangeLastModifiedBy) not exists"),
        ({"comment": "c" * 257}, {}, 400, "Comment length should not exceed 256 characters"),
        ({"value": "v" * 20001}, {}, 400, "value too long. length limit:20000"),
        ({"type": 7}, {}, 500, ""),
        ({}, {"createIfNotExists": "maybe"}, 500, "Failed to convert value"),
    ],
)
def test_put_refusals(
    fake: FakeApollo, body: dict[str, Any], params: dict[str, str], status: int, message: str
) -> None:
    create(fake, "k")
    item = {"key": "k", "value": "v2", "dataChangeLastModifiedBy": "apollo", **body}
    answer = call(fake, "PUT", f"{NS}/items/k", params, body=item)
    assert answer.status == status
    assert answer.json().get("message", "").startswith(message)
    assert fake.items("DEV", APP, "default", "application") == {"k": "v"}


def test_delete_needs_an_existing_operator_and_item(fake: FakeApollo) -> None:
    create(fake, "k")
    missing = call(fake, "DELETE", f"{NS}/items/k")
    assert error_of(missing)[0] == 500  # a missing @RequestParam
    assert "operator" in missing.json()["message"]
    answer = call(fake, "DELETE", f"{NS}/items/k", {"operator": "bob"})
    assert error_of(answer) == (400, 400, "user(operator) not exists")
    assert error_of(call(fake, "DELETE", f"{NS}/items/x", {"operator": "apollo"}))[0] == 404
    assert call(fake, "DELETE", f"{NS}/items/k", {"operator": "alice"}).status == 200
    assert fake.items("DEV", APP, "default", "application") == {}


def test_items_are_listed_a_page_at_a_time(fake: FakeApollo) -> None:
    for key in "abc":
        create(fake, key)
    page = call(fake, "GET", f"{NS}/items", {"page": "1", "size": "2"}).json()
    assert (page["page"], page["size"], page["total"]) == (1, 2, 3)
    assert [item["key"] for item in page["content"]] == ["c"]
    assert error_of(call(fake, "GET", f"{NS}/items", {"size": "0"}))[0] == 400


def test_a_json_namespace_keeps_its_text_in_the_content_item(fake: FakeApollo) -> None:
    fake.create_namespace("DEV", APP, "default", "rules.json")
    path = NS.replace("application", "rules.json")
    body = {"key": "content", "value": '{"ratio": 10}', "dataChangeCreatedBy": "apollo"}
    assert call(fake, "POST", f"{path}/items", body=body).status == 200
    assert call(fake, "GET", path).json()["format"] == "json"
    fake.release("DEV", APP, "default", "rules.json")
    raw = call(fake, "GET", f"/configfiles/raw/{APP}/default/rules.json", token=None)
    assert (raw.status, raw.body, raw.headers["Content-Type"]) == (200, '{"ratio": 10}', JSON)
    assert configs(fake, "rules.json").json()["configurations"] == {"content": '{"ratio": 10}'}


# --- Open API: releases --------------------------------------------------------------------------


def test_a_release_publishes_the_items_and_answers_its_dto(fake: FakeApollo) -> None:
    create(fake, "ratio", "10")
    create(fake, "mode", "gray")
    answer = publish(fake, "first", releaseComment="ten percent")
    assert answer.status == 200
    release = answer.json()
    assert release["id"] == 1
    assert (release["appId"], release["clusterName"], release["namespaceName"]) == (
        APP,
        "default",
        "application",
    )
    assert (release["name"], release["comment"]) == ("first", "ten percent")
    assert release["configurations"] == {"ratio": "10", "mode": "gray"}
    assert release["dataChangeCreatedBy"] == "apollo"
    assert fake.released("DEV", APP, "default", "application") == {"ratio": "10", "mode": "gray"}
    (kept,) = fake.releases("DEV", APP, "default", "application")
    assert (kept.id, kept.title, kept.comment, kept.released_by) == (
        1,
        "first",
        "ten percent",
        "apollo",
    )
    assert fake.notification_id(APP, "default", "application") == 1


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"releaseTitle": ""}, 400, "Params(releaseTitle and releasedBy) can not be empty"),
        ({"releasedBy": None}, 400, "Params(releaseTitle and releasedBy) can not be empty"),
        ({"releasedBy": "bob"}, 400, "user not exists for userName:bob"),
        ({"releaseTitle": "t" * 65}, 500, "could not execute statement"),
        ({"releaseComment": "c" * 257}, 500, "could not execute statement"),
    ],
)
def test_release_refusals(
    fake: FakeApollo, fields: dict[str, Any], status: int, message: str
) -> None:
    body = {"releaseTitle": "t", "releasedBy": "apollo", **fields}
    answer = call(
        fake, "POST", f"{NS}/releases", body={k: v for k, v in body.items() if v is not None}
    )
    assert answer.status == status
    assert answer.json()["message"].startswith(message)
    assert fake.releases("DEV", APP, "default", "application") == []
    assert publish(fake, "t" * 64, releaseComment="c" * 256).status == 200


def test_latest_release_is_an_empty_200_until_there_is_one(fake: FakeApollo) -> None:
    empty = call(fake, "GET", f"{NS}/releases/latest")
    assert (empty.status, empty.body) == (200, "")
    assert call(fake, "GET", NS.replace("application", "nope") + "/releases/latest").body == ""
    publish(fake, "first")
    assert call(fake, "GET", f"{NS}/releases/latest").json()["name"] == "first"


def test_rollback_abandons_the_release_and_wakes_clients(fake: FakeApollo) -> None:
    create(fake, "ratio", "10")
    first = publish(fake, "first").json()["id"]
    update(fake, "ratio", "50")
    second = publish(fake, "second").json()["id"]
    assert configs(fake).json()["configurations"] == {"ratio": "50"}
    assert (rollback(fake, second).status, rollback(fake, second).status) == (200, 400)
    assert fake.released("DEV", APP, "default", "application") == {"ratio": "10"}
    assert configs(fake).json()["configurations"] == {"ratio": "10"}
    assert fake.notification_id(APP, "default", "application") == 3
    assert [r.abandoned for r in fake.releases("DEV", APP, "default", "application")] == [
        False,
        True,
    ]
    only_one = rollback(fake, first)
    message = (
        "Can't rollback namespace(appId=demo-app, clusterName=default, namespaceName=application) "
        "because there is only one active release"
    )
    assert error_of(only_one) == (400, 400.0, message)
    assert error_of(rollback(fake, second)) == (400, 400.0, "release is not active")


def test_rollback_refusals(fake: FakeApollo) -> None:
    publish(fake, "first")
    assert error_of(rollback(fake, 99)) == (400, 400, "release not found")
    assert error_of(rollback(fake, "abc"))[0] == 500
    assert error_of(rollback(fake, 1, operator=""))[1:] == (400, "Param operator can not be empty")
    assert error_of(rollback(fake, 1, operator="bob"))[2] == "user not exists for userName:bob"
    forbidden = rollback(fake, 1, token=OTHER_TOKEN)
    assert error_of(forbidden) == (
        403,
        403,
        "Forbidden operation. you don't have release permission",
    )
    path = "/openapi/v1/envs/DEV/releases/1/rollback"
    assert error_of(call(fake, "PUT", path))[0] == 500  # no operator at all


# --- config service ------------------------------------------------------------------------------


def test_configs_serve_the_latest_release_and_304_for_the_same_release_key(
    fake: FakeApollo,
) -> None:
    released(fake)
    fake.set_item("DEV", APP, "default", "application", "ratio", "50")  # not released
    answer = configs(fake)
    assert (answer.status, answer.headers["Content-Type"]) == (200, JSON)
    config = answer.json()
    assert set(config) == {"appId", "cluster", "namespaceName", "configurations", "releaseKey"}
    assert (config["appId"], config["cluster"], config["namespaceName"]) == (
        APP,
        "default",
        "application",
    )
    assert config["configurations"] == {"ratio": "10"}
    assert re.fullmatch(r"\d{14}-[0-9a-f]{20}", config["releaseKey"])
    same = configs(fake, releaseKey=config["releaseKey"], ip="10.0.0.7")
    assert (same.status, same.body) == (304, "")
    assert configs(fake, releaseKey="stale").status == 200


def test_configs_of_a_namespace_never_released_are_404(fake: FakeApollo) -> None:
    answer = configs(fake)
    assert answer.status == 404
    assert answer.json()["path"] == f"/configs/{APP}/default/application"
    assert configs(fake, app="nobody").status == 404


def test_configs_fall_back_to_the_data_center_then_the_default_cluster(fake: FakeApollo) -> None:
    released(fake, "default")
    assert configs(fake, cluster="shanghai").json()["cluster"] == "default"
    for cluster in ("shanghai", "sh-dc"):
        fake.create_namespace("DEV", APP, cluster, "application")
        fake.set_item("DEV", APP, cluster, "application", "ratio", cluster)
    fake.release("DEV", APP, "sh-dc", "application")
    via_dc = configs(fake, cluster="shanghai", dataCenter="sh-dc").json()
    assert (via_dc["cluster"], via_dc["configurations"]) == ("sh-dc", {"ratio": "sh-dc"})
    fake.release("DEV", APP, "shanghai", "application")
    assert configs(fake, cluster="shanghai", dataCenter="sh-dc").json()["cluster"] == "shanghai"


def test_namespace_names_are_matched_as_apollo_matches_them(fake: FakeApollo) -> None:
    released(fake)
    for asked in ("application.properties", "Application", "APPLICATION.PROPERTIES"):
        answer = configs(fake, asked)
        assert answer.status == 200
        assert answer.json()["namespaceName"] == asked  # echoed as the client asked
        assert answer.json()["configurations"] == {"ratio": "10"}
    assert configs(fake, "application.yaml").status == 404


def test_config_files_as_flat_json_and_as_properties(fake: FakeApollo) -> None:
    fake.set_item("DEV", APP, "default", "application", "url", "jdbc:mysql://db?a=1&b=<2>")
    fake.set_item("DEV", APP, "default", "application", "key with spaces", " lead\ttab")
    fake.set_item("DEV", APP, "default", "application", "灰度", "比例")
    fake.release("DEV", APP, "default", "application")
    flat = call(
        fake, "GET", f"/configfiles/json/{APP}/default/application", {"ip": "1.2.3.4"}, token=None
    )
    assert (flat.status, flat.headers["Content-Type"]) == (200, JSON)
    for escaped in ("\\u003d", "\\u0026", "\\u003c"):  # Gson escapes = & < as HTML
        assert escaped in flat.body
    assert "灰度" in flat.body
    assert flat.json() == fake.released("DEV", APP, "default", "application")
    text = call(fake, "GET", f"/configfiles/{APP}/default/application", token=None)
    assert (text.status, text.headers["Content-Type"]) == (200, "text/plain;charset=UTF-8")
    assert text.body.splitlines() == [
        "url=jdbc\\:mysql\\://db?a\\=1&b\\=<2>",
        "key\\ with\\ spaces=\\ lead\\ttab",
        "灰度=比例",
    ]
    assert call(fake, "GET", f"/configfiles/json/{APP}/default/nope", token=None).status == 404


# --- config service: long polling ---------------------------------------------------------------


def test_a_poll_answers_at_once_when_the_client_is_behind(fake: FakeApollo) -> None:
    released(fake)
    answer = poll(fake, ("application", -1))
    assert answer.status == 200
    assert answer.json() == [
        {
            "namespaceName": "application",
            "notificationId": 1,
            "messages": {"details": {f"{APP}+default+application": 1}},
        }
    ]


def test_a_poll_holds_then_answers_304_when_nothing_changed(fake: FakeApollo) -> None:
    started = time.monotonic()
    nothing_released = poll(fake, ("application", -1))  # -1 with no release also waits
    assert (nothing_released.status, nothing_released.body) == (304, "")
    assert time.monotonic() - started >= 0.25
    released(fake)
    assert poll(fake, ("application", 1)).status == 304
    assert poll(fake, ("application", 5)).status == 304  # ahead of the server: waits too


def test_a_release_during_the_hold_wakes_the_poll(fake: FakeApollo) -> None:
    fake.hold = 10.0
    answers: list[Answer] = []
    waiting = threading.Thread(
        target=lambda: answers.append(poll(fake, ("Application.properties", -1)))
    )
    started = time.monotonic()
    waiting.start()
    time.sleep(0.2)
    fake.release("DEV", APP, "default", "application")
    waiting.join(timeout=5)
    assert time.monotonic() - started < 3
    (answer,) = answers
    assert answer.status == 200
    (notification,) = answer.json()
    # Mapped back to the client's name, less the .properties suffix, as Apollo does.
    assert notification["namespaceName"] == "Application"
    assert notification["notificationId"] == fake.notification_id(APP, "default", "application")


def test_notification_ids_are_one_sequence_for_all_namespaces(fake: FakeApollo) -> None:
    fake.create_namespace("DEV", APP, "default", "gray")
    fake.create_namespace("DEV", APP, "shanghai", "application")
    fake.release("DEV", APP, "default", "application")
    fake.release("DEV", APP, "default", "gray")
    fake.create_namespace("FAT", APP, "default", "application")
    fake.release("FAT", APP, "default", "application")  # another env: another config DB
    fake.release("DEV", APP, "shanghai", "application")
    assert fake.notification_id(APP, "default", "application") == 1
    assert fake.notification_id(APP, "default", "gray") == 2
    assert fake.notification_id(APP, "shanghai", "application") == 3
    answer = poll(fake, ("application", 1), ("gray", 2), cluster="shanghai")
    # A client of cluster shanghai watches its cluster and default.
    assert answer.json() == [
        {
            "namespaceName": "application",
            "notificationId": 3,
            "messages": {
                "details": {f"{APP}+shanghai+application": 3, f"{APP}+default+application": 1}
            },
        }
    ]


def test_bad_polls_are_refused(fake: FakeApollo) -> None:
    for notifications in ("not json", "[]", '[{"notificationId": 1}]', "{}"):
        params = {"appId": APP, "cluster": "default", "notifications": notifications}
        answer = call(fake, "GET", "/notifications/v2", params, token=None)
        assert error_of(answer) == (400, 400, f"invalid notifications format:{notifications}")
    no_cluster = call(
        fake, "GET", "/notifications/v2", {"appId": APP, "notifications": "[]"}, token=None
    )
    assert error_of(no_cluster)[0] == 500  # a missing @RequestParam
    no_app = call(fake, "GET", "/notifications/v2", {"cluster": "default"}, token=None)
    assert (no_app.status, no_app.json()["status"]) == (400, 400)  # the access-key filter
    assert error_of(call(fake, "POST", "/notifications/v2?appId=a", body={}, token=None))[0] == 400


def test_close_answers_the_polls_it_holds(clock: ManualClock) -> None:
    fake = FakeApollo(tokens={}, clock=clock)  # holding 60 s, as a real server
    answers: list[Answer] = []
    waiting = threading.Thread(target=lambda: answers.append(poll(fake, ("application", -1))))
    started = time.monotonic()
    waiting.start()
    time.sleep(0.2)
    fake.close()
    waiting.join(timeout=5)
    assert time.monotonic() - started < 3
    assert [answer.status for answer in answers] == [304]


# --- config service: access keys and meta --------------------------------------------------------


def signed(
    fake: FakeApollo,
    path: str,
    clock: ManualClock,
    secret: str = SECRET,
    skew_ms: int = 0,
    signing: str | None = None,
) -> Answer:
    """GET ``path`` signed as Apollo's Java client signs (``signing``: sign another path)."""
    timestamp = str(int(clock.now().timestamp() * 1000) + skew_ms)
    signature = apollo_signature(timestamp, signing or path, secret)
    headers = {"Timestamp": timestamp, "Authorization": f"Apollo {LOCKED_APP}:{signature}"}
    return call(fake, "GET", path, token=None, headers=headers)


def test_an_app_with_an_access_key_needs_signed_requests(
    fake: FakeApollo, clock: ManualClock
) -> None:
    fake.create_namespace("DEV", LOCKED_APP, "default", "application")
    fake.set_item("DEV", LOCKED_APP, "default", "application", "k", "v")
    fake.release("DEV", LOCKED_APP, "default", "application")
    path = f"/configs/{LOCKED_APP}/default/application?ip=10.0.0.1&label=canary"
    assert signed(fake, path, clock).json()["configurations"] == {"k": "v"}
    assert signed(fake, f"/configfiles/json/{LOCKED_APP}/default/application", clock).status == 200
    listed = urllib.parse.quote(
        json.dumps([{"namespaceName": "application", "notificationId": -1}])
    )
    notifications = f"/notifications/v2?appId={LOCKED_APP}&cluster=default&notifications={listed}"
    assert signed(fake, notifications, clock).status == 200
    assert signed(fake, path, clock, skew_ms=-59_999).status == 200
    for refused in (
        call(fake, "GET", path, token=None),
        signed(fake, path, clock, secret="wrong"),
        signed(fake, path, clock, skew_ms=60_000),
        signed(fake, path, clock, skew_ms=-60_000),
        signed(fake, path.replace("canary", "other"), clock, signing=path),  # query tampered
    ):
        assert refused.status == 401
        assert refused.json()["error"] == "Unauthorized"  # Spring Boot's page, no message
    assert configs(fake).status == 404  # an app without a key stays open


# --- meta server and faults ----------------------------------------------------------------------


def test_the_meta_server_points_at_this_server(fake: FakeApollo) -> None:
    answer = call(fake, "GET", "/services/config", {"appId": APP, "ip": "10.0.0.1"}, token=None)
    (service,) = answer.json()
    assert service["appName"] == "APOLLO-CONFIGSERVICE"
    assert service["homepageUrl"] == fake.base_url + "/"


def test_faults_break_and_heal_the_whole_server(fake: FakeApollo) -> None:
    released(fake)
    fake.fail(503)
    assert configs(fake).status == 503
    assert call(fake, "GET", NS).status == 503
    fake.hang()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        call(fake, "GET", NS, timeout=0.3)
    fake.heal()
    assert configs(fake).status == 200
    assert [seen.path for seen in fake.requests[:2]] == [f"/configs/{APP}/default/application", NS]
    assert fake.requests[1].headers["Authorization"] == TOKEN


# --- a second opinion: a third-party Python client -----------------------------------------------


@pytest.fixture
def real_time() -> Iterator[FakeApollo]:
    """The client signs with time.time(): this fake keeps the real clock."""
    with FakeApollo(
        tokens={TOKEN: [LOCKED_APP]}, hold=0.3, access_keys={LOCKED_APP: SECRET}
    ) as server:
        server.create_namespace("DEV", LOCKED_APP, "default", "application")
        server.set_item("DEV", LOCKED_APP, "default", "application", "ratio", "10")
        server.release("DEV", LOCKED_APP, "default", "application")
        yield server


def test_apollo_config_client_reads_and_follows_releases(
    real_time: FakeApollo, tmp_path: Path
) -> None:
    from apollo_config import ApolloClient  # type: ignore[import-untyped]

    client = ApolloClient(
        app_id=LOCKED_APP,
        config_url=real_time.base_url,
        access_key_secret=SECRET,
        cache_dir=str(tmp_path / "cache"),
        poll_timeout=5,
        poll_interval=0.05,
    )
    changes: list[tuple[str, dict[str, Any]]] = []
    client.register_callback(lambda namespace, changed: changes.append((namespace, changed)))
    client.start()
    try:
        assert client.get_configs("application") == {"ratio": "10"}
        real_time.set_item("DEV", LOCKED_APP, "default", "application", "ratio", "50")
        real_time.release("DEV", LOCKED_APP, "default", "application")
        deadline = time.monotonic() + 5
        while client.get_value("ratio") != "50" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get_value("ratio") == "50"
    finally:
        client.stop()
    assert ("application", {"ratio": {"old": "10", "new": "50"}}) in changes
    paths = {seen.path for seen in real_time.requests}
    assert {"/notifications/v2", f"/configs/{LOCKED_APP}/default/application"} <= paths
    assert all(seen.headers.get("Timestamp") for seen in real_time.requests)
