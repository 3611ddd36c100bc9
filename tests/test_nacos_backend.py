"""The ``nacos`` backend against the loopback Nacos server: the spec's scenarios end to end,
keys inside files, watching, compare-and-set, and every fault as a BACKEND_ERROR."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import grayrelease_adapters.nacos as nacos_plugin
import grayrelease_adapters.nacos.backend as nacos_backend
import pytest
from grayrelease_adapters.flask.openapi import PLAN_EXAMPLES
from grayrelease_adapters.nacos import NacosBackend, NacosSettings
from grayrelease_adapters.nacos.client import ConfigId, NacosClient

from grayrelease_core import (
    BackendError,
    Client,
    ConfigRef,
    ConfigurationError,
    GrayRelease,
    ManualClock,
    PlanStatus,
    ValidationError,
)

from .conftest import spec_body
from .fake_nacos import CONFIGS_PATH, FakeNacos
from .loopback import free_port
from .waiting import eventually

USERS = {"nacos": "s3cret"}
PROPERTIES = (
    "# 数据库连接 (kept as it is)\n"
    "database.url = jdbc:mysql://db-old:3306/demo\n"
    "database.username: app1\n"
    "\n"
    "database.maxPoolSize=10\n"
)


@pytest.fixture
def nacos(clock: ManualClock) -> Iterator[FakeNacos]:
    with FakeNacos(USERS, clock=clock, token_ttl=3600, min_hold=0.2) as fake:
        yield fake


def settings(fake: FakeNacos, tmp_path: Path, **nacos: Any) -> dict[str, Any]:
    return {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "background_sync": False,
        "backend": "nacos",
        "nacos": {
            "server": fake.base_url,
            "username": "nacos",
            "password": "s3cret",
            "namespace": "{environment}",
            "files": {"database": {"data_id": "{appName}.properties", "format": "properties"}},
            "poll_timeout": 1,
            **nacos,
        },
    }


@contextmanager
def nacos_of(version: str, clock: ManualClock) -> Iterator[FakeNacos]:
    """A fake imitating Nacos ``version`` (the fixture's is the fake's default, 2.5.1)."""
    with FakeNacos(USERS, clock=clock, token_ttl=3600, min_hold=0.2, version=version) as fake:
        yield fake


def one_shot(fake: FakeNacos, tmp_path: Path, **nacos: Any) -> NacosBackend:
    """A backend without the watcher (as the CLI runs it): what it read stays until refresh."""
    merged = {**settings(fake, tmp_path)["nacos"], "watch": False, **nacos}
    return NacosBackend(NacosSettings.from_section(merged))


def config_calls(fake: FakeNacos, since: int) -> list[str]:
    """The methods of the config calls the fake received after the first ``since`` requests."""
    return [seen.method for seen in fake.requests[since:] if seen.path == CONFIGS_PATH]


@pytest.fixture
def engine(nacos: FakeNacos, tmp_path: Path, clock: ManualClock) -> Iterator[GrayRelease]:
    with GrayRelease.from_settings(
        settings(nacos, tmp_path), clock=clock, plugins=(nacos_plugin,), load_entrypoints=False
    ) as gr:
        yield gr


# --- the spec's three scenarios --------------------------------------------------------------


def test_database_keys_inside_a_properties_file_from_start_to_rollback(
    nacos: FakeNacos, engine: GrayRelease
) -> None:
    nacos.set("prod", "database", "demo-app.properties", PROPERTIES, type="properties")
    plan = engine.start(engine.create_plan(spec_body(), actor="alice").id, actor="alice")
    assert [i.original_value for i in plan.items] == ["jdbc:mysql://db-old:3306/demo", "app1"]
    ref = ConfigRef("demo-app", "prod", "database", "database.url")
    assert engine.resolve(ref, Client("i-1", "192.168.1.100")).value == (
        "jdbc:mysql://db-new:3306/demo"
    )
    assert engine.resolve(ref, Client("i-2", "10.0.0.1")).value == "jdbc:mysql://db-old:3306/demo"
    engine.complete(plan.id, actor="alice")
    published = nacos.configs[("prod", "database", "demo-app.properties")]
    assert published == (
        "# 数据库连接 (kept as it is)\n"
        "database.url = jdbc:mysql://db-new:3306/demo\n"
        "database.username: app2\n"
        "\n"
        "database.maxPoolSize=10\n"
    )
    engine.rollback(plan.id, actor="alice", reason="slow queries")
    assert nacos.configs[("prod", "database", "demo-app.properties")] == PROPERTIES


def test_a_feature_switch_as_a_whole_data_id_completed_then_rolled_back(
    nacos: FakeNacos, engine: GrayRelease
) -> None:
    key = ("prod", "default", "feature.newPayment.enabled")
    nacos.set(*key, "false")
    body = PLAN_EXAMPLES["percentage"]["value"]
    plan = engine.start(engine.create_plan(body, actor="alice").id, actor="alice")
    ref = ConfigRef("order-service", "prod", "default", "feature.newPayment.enabled")
    values = {engine.resolve(ref, Client(f"i-{n}", "10.0.0.1")).value for n in range(200)}
    assert values == {"true", "false"}
    engine.complete(plan.id, actor="alice")
    assert nacos.configs[key] == "true"
    engine.rollback(plan.id, actor="alice")
    assert nacos.configs[key] == "false"


def test_a_canary_of_a_key_absent_from_nacos_is_rolled_back_without_a_trace(
    nacos: FakeNacos, engine: GrayRelease
) -> None:
    body = PLAN_EXAMPLES["canary"]["value"]  # the spec's scenario, with its gray value
    plan = engine.start(engine.create_plan(body, actor="alice").id, actor="alice")
    assert plan.items[0].original_present is False
    ref = ConfigRef("cache-service", "prod", "default", "redis.cluster.nodes")
    assert engine.resolve(ref, Client("c-1", "192.168.1.200")).value == "a:6379,b:6379"
    assert engine.resolve(ref, Client("c-2", "10.0.0.2")).value is None
    engine.complete(plan.id, actor="alice")
    assert nacos.configs[("prod", "default", "redis.cluster.nodes")] == "a:6379,b:6379"
    engine.rollback(plan.id, actor="alice")
    assert ("prod", "default", "redis.cluster.nodes") not in nacos.configs


# --- watching and compare-and-set ------------------------------------------------------------


def test_an_edit_made_in_nacos_shows_through_the_listener(
    nacos: FakeNacos, engine: GrayRelease
) -> None:
    nacos.set("prod", "default", "timeout.ms", "100")
    ref = ConfigRef("shop", "prod", "default", "timeout.ms")
    assert engine.backend.get(ref) == "100"
    nacos.set("prod", "default", "timeout.ms", "250")  # someone edits it in the console
    eventually(lambda: engine.backend.get(ref) == "250")
    nacos.set("prod", "database", "shop.properties", "database.url=a\n")
    file_ref = ConfigRef("shop", "prod", "database", "database.url")
    assert engine.backend.get(file_ref) == "a"
    nacos.set("prod", "database", "shop.properties", "database.url=b\nnew=1\n")
    eventually(lambda: engine.backend.get(file_ref) == "b")
    requests = len(nacos.requests)
    for _ in range(100):
        engine.backend.get(ref)  # the read path: memory only
    assert len([r for r in nacos.requests[requests:] if r.method == "GET"]) == 0


def test_a_watch_read_answered_before_our_publish_does_not_overwrite_it(
    nacos: FakeNacos, engine: GrayRelease
) -> None:
    """The watcher read the old value, then our publish stored the new one, then the read
    came back: the mirror keeps what we published (a stale mirror made rollbacks see drift)."""
    nacos.set("prod", "default", "late.key", "old")
    ref = ConfigRef("shop", "prod", "default", "late.key")
    backend = engine.backend
    assert isinstance(backend, NacosBackend)
    assert backend.get(ref) == "old"
    config, _ = backend.settings.locate(ref)
    polled = backend._mirror[config].md5
    backend.publish(ref, "new", actor="alice")
    real_get = backend._client.get
    backend._client.get = lambda config: "old"  # type: ignore[method-assign]  # answered late
    try:
        backend._reload(config, polled)
    finally:
        backend._client.get = real_get  # type: ignore[method-assign]
    assert backend.get(ref) == "new"
    nacos.set("prod", "default", "late.key", "edited")  # a real change after it still shows
    eventually(lambda: backend.get(ref) == "edited")


SHOP = ("prod", "database", "shop.properties")
SHOP_URL = ConfigRef("shop", "prod", "database", "database.url")


def refuse_then_publish(fake: FakeNacos, backend: NacosBackend) -> list[str]:
    """An edit in Nacos between our read and our publish is refused, not overwritten; read
    afresh, the publish goes through. The config calls the refused publish made."""
    fake.set(*SHOP, "database.url=a\nother=1\n")
    assert backend.get(SHOP_URL) == "a"
    fake.set(*SHOP, "database.url=a\nother=2\n")  # someone edits it in the console
    before = len(fake.requests)
    with pytest.raises(BackendError) as caught:
        backend.publish(SHOP_URL, "b", actor="alice")
    assert caught.value.details["casFailed"] is True
    assert "changed in Nacos" in caught.value.message
    assert fake.configs[SHOP] == "database.url=a\nother=2\n"  # nothing overwritten
    calls = config_calls(fake, before)
    backend.refresh()  # read afresh: now it goes through
    backend.publish(SHOP_URL, "b", actor="alice")
    assert fake.configs[SHOP] == "database.url=b\nother=2\n"
    return calls


@pytest.mark.parametrize("compare_and_set", ["require", "read-compare-publish"])
@pytest.mark.parametrize("version", ["2.3.0", "2.5.1", "3.0.0"])
def test_invariant_no_silent_overwrite_nacos_refuses_a_stale_publish_from_2_3_0(
    version: str, compare_and_set: str, tmp_path: Path, clock: ManualClock
) -> None:
    """Nacos 2.3.0 and later compare casMd5 themselves (3.x says its version on another
    route): one publish call, refused by the server, whatever the setting."""
    with nacos_of(version, clock) as fake:
        backend = one_shot(fake, tmp_path, compare_and_set=compare_and_set)
        try:
            assert refuse_then_publish(fake, backend) == ["POST"]
        finally:
            backend.close()


@pytest.mark.parametrize("version", ["1.4.8", "2.0.4", "2.2.3", "2.2.4"])
def test_invariant_no_silent_overwrite_a_server_ignoring_cas_md5_is_refused_at_start(
    version: str, tmp_path: Path, clock: ManualClock
) -> None:
    with nacos_of(version, clock) as fake, pytest.raises(ConfigurationError) as caught:
        GrayRelease.from_settings(
            settings(fake, tmp_path), clock=clock, plugins=(nacos_plugin,), load_entrypoints=False
        )
    message = caught.value.message
    assert f"is version {version}, which ignores casMd5" in message
    assert "2.3.0" in message
    assert "set settings.nacos.compare_and_set to 'read-compare-publish'" in message
    assert caught.value.details["field"] == "settings.nacos.compare_and_set"
    assert caught.value.details["version"] == version


@pytest.mark.parametrize("version", ["1.4.8", "2.2.3"])
def test_invariant_no_silent_overwrite_read_compare_publish_refuses_an_edit_before_the_compare(
    version: str, tmp_path: Path, clock: ManualClock
) -> None:
    """The server would overwrite (the fake's test shows it): the backend reads the config
    again just before publishing, and refuses."""
    with nacos_of(version, clock) as fake:
        backend = one_shot(fake, tmp_path, compare_and_set="read-compare-publish")
        try:
            assert refuse_then_publish(fake, backend) == ["GET"]  # refused before any POST
            before = len(fake.requests)
            backend.publish(SHOP_URL, "c", actor="alice")
            assert config_calls(fake, before) == ["GET", "POST"]  # compared, then published
        finally:
            backend.close()


def test_read_compare_publish_runs_a_plan_from_start_to_rollback_on_2_2_3(
    tmp_path: Path, clock: ManualClock
) -> None:
    with nacos_of("2.2.3", clock) as fake:
        key = ("prod", "default", "feature.newPayment.enabled")
        fake.set(*key, "false")
        with GrayRelease.from_settings(
            settings(fake, tmp_path, compare_and_set="read-compare-publish"),
            clock=clock,
            plugins=(nacos_plugin,),
            load_entrypoints=False,
        ) as engine:
            body = PLAN_EXAMPLES["percentage"]["value"]
            plan = engine.start(engine.create_plan(body, actor="alice").id, actor="alice")
            engine.complete(plan.id, actor="alice")
            assert fake.configs[key] == "true"
            engine.rollback(plan.id, actor="alice")
            assert fake.configs[key] == "false"


def test_invariant_no_silent_overwrite_a_server_down_at_start_is_asked_before_publishing(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The read path does not need the version, so a server down at start does not stop
    the backend; the first publish asks, and refuses against a server ignoring casMd5."""
    with nacos_of("2.2.3", clock) as fake:
        fake.set("prod", "default", "k", "v1")
        fake.fail(502)
        backend = one_shot(fake, tmp_path)
        try:
            fake.heal()
            ref = ConfigRef("shop", "prod", "default", "k")
            assert backend.get(ref) == "v1"
            with pytest.raises(ConfigurationError, match=r"is version 2\.2\.3"):
                backend.publish(ref, "v2", actor="alice")
            assert fake.configs[("prod", "default", "k")] == "v1"
        finally:
            backend.close()


def test_invariant_no_silent_overwrite_a_server_that_does_not_say_its_version_is_not_trusted(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A proxy that forwards only the config API: the version is unknown, so compare-and-set
    cannot be promised; with the fallback the backend compares itself."""
    with nacos_of("2.5.1", clock) as fake:
        fake.fail(404)
        with pytest.raises(ConfigurationError) as caught:
            one_shot(fake, tmp_path)
        assert "did not say its version" in caught.value.message
        assert caught.value.details["version"] is None
        backend = one_shot(fake, tmp_path, compare_and_set="read-compare-publish")
        fake.heal()
        try:
            assert refuse_then_publish(fake, backend) == ["GET"]
        finally:
            backend.close()


def test_a_complete_that_fails_half_way_restores_what_it_published(
    nacos: FakeNacos, engine: GrayRelease
) -> None:
    nacos.set("prod", "default", "k.one", "1")
    nacos.set("prod", "default", "k.two", "2")
    body = spec_body(
        appName="shop",
        groupName="default",
        configKeys=["k.one", "k.two"],
        grayValues={"k.one": "10", "k.two": " "},  # Nacos refuses blank content
    )
    plan = engine.start(engine.create_plan(body, actor="alice").id, actor="alice")
    with pytest.raises(BackendError) as caught:
        engine.complete(plan.id, actor="alice")
    assert "k.two" in caught.value.message
    assert nacos.configs[("prod", "default", "k.one")] == "1"  # restored
    assert engine.get_plan(plan.id).status is PlanStatus.ACTIVE
    assert [r.action for r in engine.plan_logs(plan.id).items][-1] == "COMPLETE_FAILED"


# --- beta offload ---------------------------------------------------------------------------


def read_as(nacos: FakeNacos, address: str, data_id: str) -> tuple[str, bool]:
    """What an unmodified Nacos client at ``address`` reads (the fake trusts the proxy header)."""
    query = urllib.parse.urlencode({"dataId": data_id, "group": "default", "tenant": "prod"})
    request = urllib.request.Request(
        f"{nacos.base_url}/nacos/v1/cs/configs?{query}", headers={"X-Forwarded-For": address}
    )
    token = json.loads(
        urllib.request.urlopen(
            f"{nacos.base_url}/nacos/v1/auth/login", data=b"username=nacos&password=s3cret"
        ).read()
    )["accessToken"]
    request.full_url += f"&accessToken={token}"
    with urllib.request.urlopen(request) as answer:
        return answer.read().decode(), answer.headers.get("isBeta") == "true"


@pytest.fixture
def beta_engine(nacos: FakeNacos, tmp_path: Path, clock: ManualClock) -> Iterator[GrayRelease]:
    with GrayRelease.from_settings(
        settings(nacos, tmp_path, beta=True),
        clock=clock,
        plugins=(nacos_plugin,),
        load_entrypoints=False,
    ) as gr:
        yield gr


def whitelist_plan(engine: GrayRelease) -> str:
    body = spec_body(
        appName="shop",
        groupName="default",
        configKeys=["pool.size"],
        grayRules={"ipWhitelist": ["192.168.1.100", "10.1.0.0/16"]},
        grayValues={"pool.size": "20"},
    )
    return engine.start(engine.create_plan(body, actor="alice").id, actor="alice").id


def test_an_ip_whitelist_is_offloaded_to_a_nacos_beta_while_the_plan_is_live(
    nacos: FakeNacos, beta_engine: GrayRelease
) -> None:
    key = ("prod", "default", "pool.size")
    nacos.set(*key, "10")
    plan_id = whitelist_plan(beta_engine)
    # Only the exact address: Nacos matches betas by address, the CIDR stays with the library.
    assert nacos.betas[key].ips == ("192.168.1.100",)
    assert read_as(nacos, "192.168.1.100", "pool.size") == ("20", True)
    assert read_as(nacos, "10.0.0.9", "pool.size") == ("10", False)
    beta_engine.pause(plan_id, actor="alice")
    assert key in nacos.betas  # the listed address keeps its gray value while paused
    beta_engine.complete(plan_id, actor="alice")
    assert key not in nacos.betas
    assert read_as(nacos, "192.168.1.100", "pool.size") == ("20", False)


def test_a_beta_that_could_not_be_stopped_is_stopped_when_nacos_is_back(
    nacos: FakeNacos, beta_engine: GrayRelease, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nacos_backend, "BETA_RETRY", 0.0)  # not the 5 s a server is given
    key = ("prod", "default", "pool.size")
    nacos.set(*key, "10")
    plan_id = whitelist_plan(beta_engine)
    assert key in nacos.betas
    nacos.fail(502)
    beta_engine.rollback(plan_id, actor="alice", reason="errors")  # the rollback itself holds
    assert beta_engine.get_plan(plan_id).status is PlanStatus.ROLLBACK
    assert key in nacos.betas
    nacos.heal()
    beta_engine.backend.refresh()  # what the sync thread calls every cache_ttl
    assert key not in nacos.betas
    assert read_as(nacos, "192.168.1.100", "pool.size") == ("10", False)


def test_a_beta_stop_nacos_answers_as_failed_raises_and_is_retried_until_it_holds(
    nacos: FakeNacos,
    beta_engine: GrayRelease,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nacos answers a failed beta stop with HTTP 200 and ``{"code":500,...,"data":false}``:
    that is a failure, not a stop, and the stop is tried again at the next refresh."""
    monkeypatch.setattr(nacos_backend, "BETA_RETRY", 0.0)
    key = ("prod", "default", "pool.size")
    nacos.set(*key, "10")
    plan_id = whitelist_plan(beta_engine)
    assert key in nacos.betas
    nacos.beta_stops_fail = True
    client = NacosClient(nacos.base_url, username="nacos", password="s3cret")
    with pytest.raises(BackendError) as caught:
        client.delete(ConfigId(*key), beta=True)
    assert "remove beta data error" in caught.value.message
    assert "the beta still runs" in caught.value.message
    beta_engine.rollback(plan_id, actor="alice", reason="errors")  # the rollback itself holds
    assert beta_engine.get_plan(plan_id).status is PlanStatus.ROLLBACK
    assert key in nacos.betas
    assert "not settled" in caplog.text
    beta_engine.backend.refresh()  # Nacos still fails: the stop stays due
    assert key in nacos.betas
    nacos.beta_stops_fail = False
    stops = len([r for r in nacos.requests if r.method == "DELETE"])
    beta_engine.backend.refresh()
    assert key not in nacos.betas
    assert len([r for r in nacos.requests if r.method == "DELETE"]) == stops + 1
    assert read_as(nacos, "192.168.1.100", "pool.size") == ("10", False)
    beta_engine.backend.refresh()  # settled: not sent again
    assert len([r for r in nacos.requests if r.method == "DELETE"]) == stops + 1


def test_keys_inside_a_file_and_other_strategies_get_no_beta(
    nacos: FakeNacos, beta_engine: GrayRelease
) -> None:
    nacos.set("prod", "database", "demo-app.properties", PROPERTIES, type="properties")
    beta_engine.start(beta_engine.create_plan(spec_body(), actor="alice").id, actor="alice")
    nacos.set("prod", "default", "feature.newPayment.enabled", "false")
    body = PLAN_EXAMPLES["percentage"]["value"]
    beta_engine.start(beta_engine.create_plan(body, actor="alice").id, actor="alice")
    assert nacos.betas == {}


# --- faults -------------------------------------------------------------------------------------


def test_every_fault_is_a_backend_error_naming_the_server_and_the_cause(
    nacos: FakeNacos, tmp_path: Path, clock: ManualClock
) -> None:
    def backend(**overrides: Any) -> NacosBackend:
        merged = {**settings(nacos, tmp_path)["nacos"], "watch": False, **overrides}
        return NacosBackend(NacosSettings.from_section(merged))

    ref = ConfigRef("shop", "prod", "default", "k")

    def failure(made: NacosBackend) -> str:
        try:
            with pytest.raises(BackendError) as caught:
                made.get(ref)
            return caught.value.message
        finally:
            made.close()

    closed = free_port()
    down = failure(backend(server=f"http://127.0.0.1:{closed}"))
    assert f"Nacos at http://127.0.0.1:{closed}" in down
    assert "cannot connect" in down
    wrong = failure(backend(password="wrong"))
    assert "refused the user 'nacos'" in wrong
    assert "wrong" not in wrong.replace("refused", "")  # the password is never told
    nacos.fail(403)
    assert "access denied (403)" in failure(backend())
    nacos.heal()
    nacos.hang()
    assert "no answer" in failure(backend(timeout=0.3))
    nacos.heal()
    nacos.set("prod", "default", "shop.json", '{"a": ')
    broken = backend(files={"default": {"data_id": "{appName}.json", "format": "json"}})
    try:
        with pytest.raises(BackendError) as caught:
            broken.get(ConfigRef("shop", "prod", "default", "a"))
        assert "is not a json file any more" in caught.value.message
    finally:
        broken.close()
    absent = backend()
    try:
        assert absent.get(ConfigRef("shop", "prod", "default", "never.set")) is None
    finally:
        absent.close()


def test_an_expired_token_is_replaced_and_the_call_goes_through(
    nacos: FakeNacos, tmp_path: Path, clock: ManualClock
) -> None:
    nacos.set("prod", "default", "k", "v")
    made = NacosBackend(
        NacosSettings.from_section({**settings(nacos, tmp_path)["nacos"], "watch": False})
    )
    try:
        ref = ConfigRef("shop", "prod", "default", "k")
        assert made.get(ref) == "v"
        clock.advance(timedelta(hours=2))  # past the token's hour on the server's clock
        made.refresh()
        assert made.get(ref) == "v"
        assert nacos.logins == 2
    finally:
        made.close()


def test_the_backend_is_an_installed_entry_point(
    nacos: FakeNacos, tmp_path: Path, clock: ManualClock
) -> None:
    """Installed, the adapter needs no plugins= argument: the grayrelease entry point."""
    with GrayRelease.from_settings(settings(nacos, tmp_path), clock=clock) as gr:
        assert gr.backend.name == "nacos"


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"server": "nacos:8848"}, "settings.nacos.server"),
        ({"username": "u"}, "settings.nacos.password"),
        ({"namespace": "{tenant}"}, "settings.nacos.namespace"),
        ({"files": {"g": {"format": "toml", "data_id": "x"}}}, "settings.nacos.files.g.format"),
        ({"files": {"g": {}}}, "settings.nacos.files.g.data_id"),
        ({"poll_timeout": 0}, "settings.nacos.poll_timeout"),
        ({"watch": "yes"}, "settings.nacos.watch"),
        ({"beta": 1}, "settings.nacos.beta"),
        ({"compare_and_set": "maybe"}, "settings.nacos.compare_and_set"),
        ({"servers": ["a"]}, "settings.nacos.servers"),
    ],
)
def test_bad_settings_fail_at_start_up(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GrayRelease.from_settings(
            {"backend": "nacos", "nacos": section, "database_url": "sqlite://"},
            plugins=(nacos_plugin,),
            load_entrypoints=False,
        )
    assert caught.value.field == field
