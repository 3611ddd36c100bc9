"""The loopback Nacos fake speaks the v1 config Open API as a Nacos 2.x server does.

Plain urllib on one side, so that these tests check the fake and not a client of it; the last
test lets the official Python SDK (nacos-sdk-python 1.0.0, the HTTP one) talk to it as a
second opinion on the wire format.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from grayrelease_core import ManualClock

from .fake_nacos import (
    CONFIGS_PATH,
    LISTENER_PATH,
    STATE_PATH,
    STATE_PATH_V3,
    Beta,
    FakeNacos,
    Seen,
    nacos_md5,
)
from .loopback import Answer, send

USERS = {"nacos": "s3cret"}
GROUP = "DEFAULT_GROUP"
DATA_ID = "gray-release.yaml"
CONTENT = "灰度发布:\n  比例: 10%\n  说明: 先放 10% 的流量"
BETA_IP = "10.0.0.7"


def call(
    fake: FakeNacos,
    method: str,
    path: str,
    params: Mapping[str, str] | None = None,
    *,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Answer:
    url = fake.base_url + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    return send(request, timeout)


def login(fake: FakeNacos, username: str = "nacos", password: str = "s3cret") -> Answer:
    form = {"username": username, "password": password}
    return call(fake, "POST", "/nacos/v1/auth/login", form=form)


def token_of(fake: FakeNacos) -> str:
    answer = login(fake)
    assert answer.status == 200
    token: str = answer.json()["accessToken"]
    return token


def read(fake: FakeNacos, data_id: str = DATA_ID, **params: str) -> Answer:
    headers = {}
    if "ip" in params:
        headers["X-Forwarded-For"] = params.pop("ip")
    query = {"dataId": data_id, "group": GROUP, **params}
    return call(fake, "GET", CONFIGS_PATH, query, headers=headers)


def publish(
    fake: FakeNacos, content: str, *, headers: Mapping[str, str] | None = None, **form: str
) -> Answer:
    fields = {"dataId": DATA_ID, "group": GROUP, "content": content, **form}
    return call(fake, "POST", CONFIGS_PATH, form=fields, headers=headers)


def probe(*entries: tuple[str, str, str] | tuple[str, str, str, str]) -> str:
    """The Listening-Configs value for ``(dataId, group, md5[, tenant])`` entries."""
    return "".join("\x02".join(entry) + "\x01" for entry in entries)


def listen(
    fake: FakeNacos,
    listening: str,
    *,
    timeout_ms: int = 10_000,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    sent = {"Long-Pulling-Timeout": str(timeout_ms), **(headers or {})}
    return call(fake, "POST", LISTENER_PATH, form={"Listening-Configs": listening}, headers=sent)


def changed_keys(answer: Answer) -> list[list[str]]:
    """The ``[dataId, group(, tenant)]`` entries of a long poll's answer."""
    lines = urllib.parse.unquote_plus(answer.body).split("\x01")
    return [line.split("\x02") for line in lines if line.strip()]


@pytest.fixture
def fake() -> Iterator[FakeNacos]:
    with FakeNacos(min_hold=0.0) as server:
        yield server


@pytest.fixture
def secured(clock: ManualClock) -> Iterator[FakeNacos]:
    with FakeNacos(USERS, clock=clock, token_ttl=60, min_hold=0.0) as server:
        yield server


# --- auth ----------------------------------------------------------------------------------------


def test_login_answers_a_token_with_its_ttl(secured: FakeNacos) -> None:
    answer = login(secured)
    assert answer.status == 200
    body = answer.json()
    assert body["tokenTtl"] == 60
    assert body["globalAdmin"] is False
    assert isinstance(body["accessToken"], str)
    assert body["accessToken"]
    assert secured.logins == 1


def test_login_refuses_wrong_credentials(secured: FakeNacos) -> None:
    for username, password in (("nacos", "wrong"), ("nobody", "s3cret")):
        answer = login(secured, username, password)
        assert (answer.status, answer.body) == (403, "unknown user!")
    assert secured.logins == 0


def test_config_calls_without_a_valid_token_are_forbidden(secured: FakeNacos) -> None:
    secured.set("", GROUP, DATA_ID, CONTENT)
    missing = read(secured)
    assert missing.status == 403
    assert missing.json()["message"] == "user not found!"
    unknown = read(secured, accessToken="not-a-token")
    assert unknown.status == 403
    assert unknown.json()["message"] == "token invalid!"
    assert listen(secured, probe((DATA_ID, GROUP, ""))).status == 403
    assert publish(secured, "x: 1").status == 403
    assert secured.configs[("", GROUP, DATA_ID)] == CONTENT


def test_a_token_is_taken_from_query_form_or_bearer_header(secured: FakeNacos) -> None:
    token = token_of(secured)
    assert publish(secured, CONTENT, accessToken=token).status == 200
    assert read(secured, accessToken=token).body == CONTENT
    bearer = call(
        secured,
        "GET",
        CONFIGS_PATH,
        {"dataId": DATA_ID, "group": GROUP},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bearer.body == CONTENT


def test_a_token_expires_after_its_ttl_on_the_fakes_clock(
    secured: FakeNacos, clock: ManualClock
) -> None:
    secured.set("", GROUP, DATA_ID, CONTENT)
    token = token_of(secured)
    clock.advance(59)
    assert read(secured, accessToken=token).status == 200
    clock.advance(1)
    expired = read(secured, accessToken=token)
    assert expired.status == 403
    assert expired.json()["message"] == "token expired!"
    assert read(secured, accessToken=token_of(secured)).status == 200
    assert secured.logins == 2


# --- read and publish ----------------------------------------------------------------------------


def test_an_absent_config_is_404(fake: FakeNacos) -> None:
    answer = read(fake)
    assert answer.status == 404
    assert answer.body.strip() == "config data not exist"


def test_publish_then_read_round_trips_utf8_content(fake: FakeNacos) -> None:
    answer = publish(fake, CONTENT, type="yaml", appName="gray", src_user="ops", desc="比例")
    assert (answer.status, answer.body) == (200, "true")
    got = read(fake)
    assert got.status == 200
    assert got.body == CONTENT
    assert got.headers["Content-Type"] == "text/plain;charset=UTF-8"
    assert got.headers["Config-Type"] == "yaml"
    assert got.headers["Content-MD5"] == nacos_md5(CONTENT)
    assert got.headers["isBeta"] is None
    assert fake.configs == {("", GROUP, DATA_ID): CONTENT}


def test_the_type_defaults_to_text_and_unknown_types_become_text(fake: FakeNacos) -> None:
    publish(fake, CONTENT)
    assert read(fake).headers["Config-Type"] == "text"
    publish(fake, CONTENT, type="markdown")
    assert read(fake).headers["Config-Type"] == "text"


def test_namespaces_are_separate_and_public_reads_as_empty(fake: FakeNacos) -> None:
    publish(fake, "in ns", tenant="ns-1")
    publish(fake, "public one")
    assert read(fake, tenant="ns-1").body == "in ns"
    assert read(fake).body == "public one"
    assert read(fake, tenant="public").body == "public one"
    assert fake.configs == {("ns-1", GROUP, DATA_ID): "in ns", ("", GROUP, DATA_ID): "public one"}


def test_parameters_may_come_in_the_query_of_a_post(fake: FakeNacos) -> None:
    # What nacos-sdk-python does: a POST with every parameter in the query string.
    params = {"dataId": DATA_ID, "group": GROUP, "content": CONTENT}
    answer = call(fake, "POST", CONFIGS_PATH, params, form={})
    assert (answer.status, answer.body) == (200, "true")
    assert fake.configs[("", GROUP, DATA_ID)] == CONTENT


@pytest.mark.parametrize("missing", ["dataId", "group"])
def test_a_read_without_data_id_or_group_is_400(fake: FakeNacos, missing: str) -> None:
    params = {"dataId": DATA_ID, "group": GROUP}
    del params[missing]
    answer = call(fake, "GET", CONFIGS_PATH, params)
    assert answer.status == 400
    assert f"Required request parameter '{missing}'" in answer.json()["message"]


@pytest.mark.parametrize("missing", ["dataId", "group", "content"])
def test_a_publish_without_a_required_field_is_400(fake: FakeNacos, missing: str) -> None:
    form = {"dataId": DATA_ID, "group": GROUP, "content": CONTENT}
    del form[missing]
    answer = call(fake, "POST", CONFIGS_PATH, form=form)
    assert answer.status == 400
    assert f"'{missing}'" in answer.json()["message"]
    assert fake.configs == {}


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"content": "  "}, "content is blank"),
        ({"dataId": "has space"}, "invalid dataId : has space"),
        ({"group": "a/b"}, "invalid group : a/b"),
        ({"tenant": "ns 1"}, "invalid tenant"),
        ({"desc": "x" * 129}, "too long desc, over 128"),
    ],
)
def test_a_publish_the_server_would_refuse_is_400(
    fake: FakeNacos, form: dict[str, str], reason: str
) -> None:
    fields = {"dataId": DATA_ID, "group": GROUP, "content": CONTENT, **form}
    answer = call(fake, "POST", CONFIGS_PATH, form=fields)
    assert answer.status == 400
    assert answer.body.startswith(f"caused: {reason}")
    assert answer.body.endswith(";")
    assert fake.configs == {}


def test_delete_answers_true_even_for_an_absent_config(fake: FakeNacos) -> None:
    publish(fake, CONTENT)
    params = {"dataId": DATA_ID, "group": GROUP}
    for _ in range(2):
        answer = call(fake, "DELETE", CONFIGS_PATH, params)
        assert (answer.status, answer.body) == (200, "true")
    assert read(fake).status == 404
    assert fake.configs == {}


# --- compare and set -----------------------------------------------------------------------------


def test_cas_publish_with_the_current_md5_succeeds(fake: FakeNacos) -> None:
    publish(fake, "v1")
    answer = publish(fake, "v2", headers={"casMd5": nacos_md5("v1")})
    assert (answer.status, answer.body) == (200, "true")
    assert read(fake).body == "v2"


def test_cas_publish_with_a_stale_md5_fails_and_changes_nothing(fake: FakeNacos) -> None:
    publish(fake, "v1", type="yaml")
    answer = publish(fake, "v2", type="json", headers={"casMd5": nacos_md5("v0")})
    assert answer.status == 500
    assert "Cas publish fail, server md5 may have changed." in answer.body
    got = read(fake)
    assert (got.body, got.headers["Config-Type"]) == ("v1", "yaml")


def test_cas_publish_of_an_absent_config_creates_it_as_the_server_does(fake: FakeNacos) -> None:
    answer = publish(fake, "v1", headers={"casMd5": nacos_md5("anything")})
    assert (answer.status, answer.body) == (200, "true")
    assert fake.configs == {("", GROUP, DATA_ID): "v1"}


@pytest.mark.parametrize("version", ["1.4.8", "2.0.4", "2.2.3", "2.2.4"])
def test_before_2_3_0_cas_md5_is_ignored_and_the_publish_overwrites(version: str) -> None:
    """What those servers do: their HTTP publish never reads the header."""
    with FakeNacos(min_hold=0.0, version=version) as old:
        publish(old, "v1")
        answer = publish(old, "v2", headers={"casMd5": nacos_md5("v0")})
        assert (answer.status, answer.body) == (200, "true")
        assert read(old).body == "v2"


@pytest.mark.parametrize("version", ["2.3.0-BETA", "2.3.0", "2.4.0.1", "3.0.0"])
def test_from_2_3_0_a_stale_cas_md5_is_refused(version: str) -> None:
    with FakeNacos(min_hold=0.0, version=version) as fake:
        publish(fake, "v1")
        answer = publish(fake, "v2", headers={"casMd5": nacos_md5("v0")})
        assert answer.status == 500
        assert read(fake).body == "v1"


def test_cas_md5_as_a_form_field_is_refused_not_silently_dropped(fake: FakeNacos) -> None:
    publish(fake, "v1")
    answer = publish(fake, "v2", casMd5=nacos_md5("v0"))
    assert answer.status == 400
    assert "request header" in answer.body
    assert read(fake).body == "v1"


# --- beta (gray by IP) ---------------------------------------------------------------------------


def test_a_beta_is_served_to_its_ips_only(fake: FakeNacos) -> None:
    publish(fake, "formal", type="yaml")
    answer = publish(fake, "beta", type="yaml", headers={"betaIps": f"10.0.0.1,{BETA_IP}"})
    assert (answer.status, answer.body) == (200, "true")
    assert fake.configs == {("", GROUP, DATA_ID): "formal"}
    assert fake.betas == {("", GROUP, DATA_ID): Beta("beta", ("10.0.0.1", BETA_IP), "yaml")}
    inside = read(fake, ip=f"{BETA_IP}, 172.16.0.1")
    assert (inside.body, inside.headers["isBeta"]) == ("beta", "true")
    assert inside.headers["Content-MD5"] == nacos_md5("beta")
    outside = read(fake, ip="10.0.0.9")
    assert (outside.body, outside.headers["isBeta"]) == ("formal", None)
    assert read(fake).body == "formal"  # the socket's own address, 127.0.0.1


def test_the_beta_can_be_queried_and_stopped(fake: FakeNacos) -> None:
    publish(fake, "formal")
    publish(fake, "beta", headers={"betaIps": BETA_IP})
    query = read(fake, beta="true")
    assert query.json()["data"]["content"] == "beta"
    assert query.json()["data"]["betaIps"] == BETA_IP
    params = {"dataId": DATA_ID, "group": GROUP, "beta": "true"}
    stopped = call(fake, "DELETE", CONFIGS_PATH, params)
    assert stopped.status == 200
    assert stopped.json() == {"code": 200, "message": "stop beta ok", "data": True}
    assert fake.betas == {}
    assert read(fake, ip=BETA_IP).body == "formal"
    assert read(fake, beta="true").json()["data"] is None


def test_a_failing_beta_stop_answers_200_with_code_500_and_the_beta_stays(fake: FakeNacos) -> None:
    publish(fake, "formal")
    publish(fake, "beta", headers={"betaIps": BETA_IP})
    params = {"dataId": DATA_ID, "group": GROUP, "beta": "true"}
    fake.beta_stops_fail = True
    failed = call(fake, "DELETE", CONFIGS_PATH, params)
    assert failed.status == 200  # the server's stopBeta answers its failure in the body
    assert failed.json() == {"code": 500, "message": "remove beta data error", "data": False}
    assert read(fake, ip=BETA_IP).body == "beta"
    fake.beta_stops_fail = False
    assert call(fake, "DELETE", CONFIGS_PATH, params).json()["data"] is True
    assert fake.betas == {}


def test_a_beta_without_a_formal_config_is_404_outside(fake: FakeNacos) -> None:
    publish(fake, "beta", headers={"betaIps": BETA_IP})
    assert read(fake, ip=BETA_IP).body == "beta"
    assert read(fake).status == 404


# --- the server's version ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.4.8", "2.2.3", "2.5.1"])
def test_the_console_state_route_says_the_version_without_auth(version: str) -> None:
    with FakeNacos(USERS, min_hold=0.0, version=version) as server:
        answer = call(server, "GET", STATE_PATH)
        assert answer.status == 200
        assert answer.json() == {
            "standalone_mode": "standalone",
            "function_mode": None,
            "version": version,
        }
        assert call(server, "GET", STATE_PATH_V3).status == 404
        assert call(server, "POST", STATE_PATH, form={}).status == 405


def test_from_3_0_0_the_version_is_on_the_admin_route_only() -> None:
    with FakeNacos(USERS, min_hold=0.0, version="3.0.0") as server:
        assert call(server, "GET", STATE_PATH).status == 404
        answer = call(server, "GET", STATE_PATH_V3)
        assert answer.status == 200
        assert answer.json()["code"] == 0
        assert answer.json()["data"]["version"] == "3.0.0"


# --- long polling --------------------------------------------------------------------------------


def test_a_stale_md5_is_answered_at_once(fake: FakeNacos) -> None:
    fake.set("", GROUP, DATA_ID, CONTENT)
    fake.set("ns-1", GROUP, "other.json", "{}", type="json")
    started = time.monotonic()
    answer = listen(
        fake,
        probe(
            (DATA_ID, GROUP, nacos_md5("old")),
            ("other.json", GROUP, nacos_md5("{}"), "ns-1"),
            ("absent.yaml", GROUP, ""),
        ),
    )
    assert time.monotonic() - started < 2
    assert answer.status == 200
    assert answer.body.endswith("\n")
    assert "%02" in answer.body
    assert "%01" in answer.body
    assert changed_keys(answer) == [[DATA_ID, GROUP]]


def test_a_changed_config_in_a_namespace_names_its_tenant(fake: FakeNacos) -> None:
    fake.set("ns-1", GROUP, DATA_ID, CONTENT)
    answer = listen(fake, probe((DATA_ID, GROUP, "", "ns-1")))
    assert changed_keys(answer) == [[DATA_ID, GROUP, "ns-1"]]


def test_a_poll_is_held_until_the_config_changes(fake: FakeNacos) -> None:
    fake.set("", GROUP, DATA_ID, "v1")
    timer = threading.Timer(0.3, fake.set, ("", GROUP, DATA_ID, "v2"))
    started = time.monotonic()
    timer.start()
    try:
        answer = listen(fake, probe((DATA_ID, GROUP, nacos_md5("v1"))), timeout_ms=10_000)
    finally:
        timer.join()
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 5
    assert changed_keys(answer) == [[DATA_ID, GROUP]]


def test_a_publish_or_delete_over_http_wakes_a_held_poll(fake: FakeNacos) -> None:
    publish(fake, "v1")
    for change in (
        lambda: publish(fake, "v2"),
        lambda: call(fake, "DELETE", CONFIGS_PATH, {"dataId": DATA_ID, "group": GROUP}),
    ):
        current = nacos_md5(fake.configs[("", GROUP, DATA_ID)])
        timer = threading.Timer(0.2, change)
        timer.start()
        try:
            answer = listen(fake, probe((DATA_ID, GROUP, current)))
        finally:
            timer.join()
        assert changed_keys(answer) == [[DATA_ID, GROUP]]


def test_a_poll_without_change_times_out_empty(fake: FakeNacos) -> None:
    fake.set("", GROUP, DATA_ID, "v1")
    fake.min_hold = 0.3  # a real server would hold 10 s at least
    started = time.monotonic()
    answer = listen(fake, probe((DATA_ID, GROUP, nacos_md5("v1"))), timeout_ms=300)
    elapsed = time.monotonic() - started
    assert (answer.status, answer.body) == (200, "")
    assert 0.25 <= elapsed < 3


def test_a_poll_is_held_the_requested_time_less_half_a_second(fake: FakeNacos) -> None:
    started = time.monotonic()
    answer = listen(fake, probe((DATA_ID, GROUP, "")), timeout_ms=900)
    elapsed = time.monotonic() - started
    assert answer.body == ""
    assert 0.35 <= elapsed < 3


def test_no_hang_up_answers_at_once_even_without_change(fake: FakeNacos) -> None:
    fake.min_hold = 10.0
    started = time.monotonic()
    answer = listen(fake, probe((DATA_ID, GROUP, "")), headers={"longPullingNoHangUp": "true"})
    assert (answer.status, answer.body) == (200, "")
    assert time.monotonic() - started < 2


def test_a_beta_client_polls_against_the_beta(fake: FakeNacos) -> None:
    fake.set("", GROUP, DATA_ID, "formal")
    publish(fake, "beta", headers={"betaIps": BETA_IP})
    formal_md5 = probe((DATA_ID, GROUP, nacos_md5("formal")))
    inside = listen(fake, formal_md5, headers={"X-Forwarded-For": BETA_IP})
    assert changed_keys(inside) == [[DATA_ID, GROUP]]
    outside = listen(fake, formal_md5, headers={"longPullingNoHangUp": "true"})
    assert outside.body == ""


@pytest.mark.parametrize(
    "listening",
    ["", "   ", "only-data-id\x01", f"{DATA_ID}\x02{GROUP}\x01", "a\x02b\x02c\x02d\x02e\x01"],
)
def test_a_malformed_listening_configs_is_400(fake: FakeNacos, listening: str) -> None:
    answer = listen(fake, listening)
    assert answer.status == 400
    assert answer.body == "caused: invalid probeModify;"


def test_a_poll_needs_a_numeric_timeout_header(fake: FakeNacos) -> None:
    listening = probe((DATA_ID, GROUP, ""))
    answer = listen(fake, listening, headers={"Long-Pulling-Timeout": "soon"})
    assert (answer.status, answer.body) == (400, 'caused: For input string: "soon";')
    plain = call(fake, "POST", LISTENER_PATH, form={"Listening-Configs": listening})
    assert plain.status == 400


# --- test helpers and faults ---------------------------------------------------------------------


def test_set_and_remove_check_what_the_console_checks(fake: FakeNacos) -> None:
    with pytest.raises(ValueError, match="content is blank"):
        fake.set("", GROUP, DATA_ID, "")
    with pytest.raises(ValueError, match="invalid dataId"):
        fake.set("", GROUP, "a b", "x")
    fake.set("", GROUP, DATA_ID, "x")
    fake.remove("", GROUP, DATA_ID)
    fake.remove("", GROUP, DATA_ID)
    assert fake.configs == {}


def test_requests_are_recorded_with_their_parameters(fake: FakeNacos) -> None:
    publish(fake, CONTENT)
    read(fake, tenant="public")
    assert fake.requests == [
        Seen("POST", CONFIGS_PATH, {"dataId": DATA_ID, "group": GROUP, "content": CONTENT}),
        Seen("GET", CONFIGS_PATH, {"dataId": DATA_ID, "group": GROUP, "tenant": "public"}),
    ]


def test_fail_and_hang_break_the_server_until_healed(fake: FakeNacos) -> None:
    fake.set("", GROUP, DATA_ID, CONTENT)
    fake.fail(502)
    failed = read(fake)
    assert failed.status == 502
    assert failed.headers["Content-Type"] == "text/html"
    fake.hang()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        call(fake, "GET", CONFIGS_PATH, {"dataId": DATA_ID, "group": GROUP}, timeout=0.3)
    fake.heal()
    assert read(fake).body == CONTENT


def test_close_answers_the_polls_it_holds() -> None:
    fake = FakeNacos()  # holding 10 s, as a real server
    answers: list[Answer] = []
    poll = threading.Thread(target=lambda: answers.append(listen(fake, probe(("a", "b", "")))))
    started = time.monotonic()
    poll.start()
    time.sleep(0.2)
    fake.close()
    poll.join(timeout=5)
    assert time.monotonic() - started < 3
    assert [(answer.status, answer.body) for answer in answers] == [(200, "")]


# --- a second opinion: the official Python SDK ---------------------------------------------------


@pytest.fixture
def sdk_logs(tmp_path: Path) -> Iterator[Path]:
    """The SDK logs to a file it opens on first use; close it when the test is done."""
    yield tmp_path / "logs"
    sdk_logger = logging.getLogger("nacos.client")
    for handler in list(sdk_logger.handlers):
        sdk_logger.removeHandler(handler)
        handler.close()


# nacos-sdk-python 1.0.0 builds an ssl.SSLContext() without a protocol, even for plain HTTP.
@pytest.mark.filterwarnings("ignore:ssl.SSLContext:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS:DeprecationWarning")
def test_the_official_python_sdk_reads_and_publishes_through_the_fake(
    secured: FakeNacos, sdk_logs: Path, tmp_path: Path
) -> None:
    # Imported here so that the protocol tests above run without the SDK installed.
    import nacos  # type: ignore[import-untyped]

    client = nacos.NacosClient(
        server_addresses=secured.address,
        namespace="ns-1",
        username="nacos",
        password="s3cret",
        logDir=str(sdk_logs),
    )
    client.set_options(
        no_snapshot=True,
        snapshot_base=str(tmp_path / "snapshot"),
        failover_base=str(tmp_path / "failover"),
    )
    assert secured.logins == 1
    assert client.get_config(DATA_ID, GROUP) is None
    assert client.publish_config(DATA_ID, GROUP, CONTENT, config_type="yaml") is True
    assert secured.configs == {("ns-1", GROUP, DATA_ID): CONTENT}
    assert client.get_config(DATA_ID, GROUP) == CONTENT
    secured.set("ns-1", GROUP, DATA_ID, "比例: 50%")
    assert client.get_config(DATA_ID, GROUP) == "比例: 50%"
    assert client.remove_config(DATA_ID, GROUP) is True
    assert secured.configs == {}
    assert all(seen.params.get("accessToken") for seen in secured.requests[1:])
    assert secured.requests[1].params["tenant"] == "ns-1"
