"""The ``apollo`` backend against the loopback Apollo: the spec's scenarios end to end, reads
from the latest release, watching, the checks that stand in for compare-and-set, a release
that fails half way, and every fault as a BACKEND_ERROR."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grayrelease_adapters.apollo as apollo_plugin
import pytest
from grayrelease_adapters.apollo import ApolloBackend, ApolloSettings
from grayrelease_adapters.flask.openapi import PLAN_EXAMPLES

from grayrelease_core import (
    BackendError,
    Client,
    ConfigRef,
    GrayRelease,
    ManualClock,
    PlanStatus,
    ValidationError,
)

from .conftest import spec_body
from .fake_apollo import FakeApollo, _server_error
from .loopback import free_port
from .waiting import eventually

TOKEN = "c0nsumer-t0ken"
APPS = ("demo-app", "order-service", "cache-service", "shop")
ENV = "PRO"


@pytest.fixture
def apollo(clock: ManualClock) -> Iterator[FakeApollo]:
    with FakeApollo(
        tokens={TOKEN: APPS, "other-team": ["elsewhere"]}, config_env=ENV, hold=0.3
    ) as fake:
        for app in APPS:
            for namespace in ("application", "database", "default"):
                fake.create_namespace(ENV, app, "default", namespace)
        yield fake


def section(fake: FakeApollo, **overrides: Any) -> dict[str, Any]:
    return {
        "portal": fake.base_url,
        "token": TOKEN,
        "envs": {"prod": ENV},
        "config_services": {ENV: fake.base_url},
        "timeout": 2,
        **overrides,
    }


def settings(fake: FakeApollo, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "background_sync": False,
        "backend": "apollo",
        "apollo": section(fake, **overrides),
    }


@pytest.fixture
def engine(apollo: FakeApollo, tmp_path: Path, clock: ManualClock) -> Iterator[GrayRelease]:
    with GrayRelease.from_settings(
        settings(apollo, tmp_path), clock=clock, plugins=(apollo_plugin,), load_entrypoints=False
    ) as gr:
        yield gr


def seed(fake: FakeApollo, app: str, namespace: str, **values: str) -> None:
    for key, value in values.items():
        fake.set_item(ENV, app, "default", namespace, key.replace("_", "."), value)
    fake.release(ENV, app, "default", namespace, title="seed")


# --- the spec's three scenarios --------------------------------------------------------------


def test_database_keys_from_start_to_one_release_and_back(
    apollo: FakeApollo, engine: GrayRelease
) -> None:
    seed(
        apollo,
        "demo-app",
        "database",
        database_url="jdbc:mysql://db-old:3306/demo",
        database_username="app1",
        database_maxPoolSize="10",
    )
    plan = engine.start(engine.create_plan(spec_body(), actor="alice").id, actor="alice")
    assert [i.original_value for i in plan.items] == ["jdbc:mysql://db-old:3306/demo", "app1"]
    ref = ConfigRef("demo-app", "prod", "database", "database.url")
    assert engine.resolve(ref, Client("i-1", "192.168.1.100")).value == (
        "jdbc:mysql://db-new:3306/demo"
    )
    assert engine.resolve(ref, Client("i-2", "10.0.0.1")).value == "jdbc:mysql://db-old:3306/demo"
    engine.complete(plan.id, actor="alice")
    assert apollo.released(ENV, "demo-app", "default", "database") == {
        "database.url": "jdbc:mysql://db-new:3306/demo",
        "database.username": "app2",
        "database.maxPoolSize": "10",
    }
    releases = apollo.releases(ENV, "demo-app", "default", "database")
    assert len(releases) == 2  # the seed, then both keys together: never half a plan
    assert releases[-1].title == f"complete 数据库配置灰度发布 ({plan.id})"[:64]
    assert "by alice" in (releases[-1].comment or "")
    engine.rollback(plan.id, actor="alice", reason="slow queries")
    assert apollo.released(ENV, "demo-app", "default", "database") == {
        "database.url": "jdbc:mysql://db-old:3306/demo",
        "database.username": "app1",
        "database.maxPoolSize": "10",
    }
    assert apollo.releases(ENV, "demo-app", "default", "database")[-1].title.startswith("rollback ")
    # The items match the release: nothing is left for someone else's next release to ship.
    assert apollo.items(ENV, "demo-app", "default", "database") == apollo.released(
        ENV, "demo-app", "default", "database"
    )


def test_a_feature_switch_by_percentage_completed_then_rolled_back(
    apollo: FakeApollo, engine: GrayRelease
) -> None:
    seed(apollo, "order-service", "default", feature_newPayment_enabled="false")
    body = PLAN_EXAMPLES["percentage"]["value"]
    plan = engine.start(engine.create_plan(body, actor="alice").id, actor="alice")
    ref = ConfigRef("order-service", "prod", "default", "feature.newPayment.enabled")
    values = {engine.resolve(ref, Client(f"i-{n}", "10.0.0.1")).value for n in range(200)}
    assert values == {"true", "false"}
    engine.complete(plan.id, actor="alice")
    released = apollo.released(ENV, "order-service", "default", "default")
    assert released == {"feature.newPayment.enabled": "true"}
    engine.rollback(plan.id, actor="alice")
    released = apollo.released(ENV, "order-service", "default", "default")
    assert released == {"feature.newPayment.enabled": "false"}


def test_a_canary_of_a_new_key_is_rolled_back_without_a_trace(
    apollo: FakeApollo, engine: GrayRelease
) -> None:
    seed(apollo, "cache-service", "default", redis_timeout="100")
    body = PLAN_EXAMPLES["canary"]["value"]
    plan = engine.start(engine.create_plan(body, actor="alice").id, actor="alice")
    assert plan.items[0].original_present is False
    ref = ConfigRef("cache-service", "prod", "default", "redis.cluster.nodes")
    assert engine.resolve(ref, Client("c-1", "192.168.1.200")).value == "a:6379,b:6379"
    assert engine.resolve(ref, Client("c-2", "10.0.0.2")).value is None
    engine.complete(plan.id, actor="alice")
    assert apollo.released(ENV, "cache-service", "default", "default") == {
        "redis.timeout": "100",
        "redis.cluster.nodes": "a:6379,b:6379",
    }
    engine.rollback(plan.id, actor="alice")
    assert apollo.released(ENV, "cache-service", "default", "default") == {"redis.timeout": "100"}
    assert apollo.items(ENV, "cache-service", "default", "default") == {"redis.timeout": "100"}


# --- reading and watching --------------------------------------------------------------------


def test_originals_come_from_the_latest_release_not_from_unreleased_edits(
    apollo: FakeApollo, engine: GrayRelease
) -> None:
    seed(apollo, "shop", "application", timeout="100")
    apollo.set_item(ENV, "shop", "default", "application", "timeout", "999")  # not released
    assert engine.backend.get(ConfigRef("shop", "prod", "application", "timeout")) == "100"
    assert engine.backend.get(ConfigRef("shop", "prod", "application", "absent")) is None
    assert engine.backend.get(ConfigRef("shop", "prod", "never-made", "k")) is None


def test_a_release_made_in_apollo_shows_through_the_notifications(
    apollo: FakeApollo, engine: GrayRelease
) -> None:
    seed(apollo, "shop", "application", timeout="100")
    ref = ConfigRef("shop", "prod", "application", "timeout")
    assert engine.backend.get(ref) == "100"
    apollo.set_item(ENV, "shop", "default", "application", "timeout", "250")
    apollo.release(ENV, "shop", "default", "application")
    eventually(lambda: engine.backend.get(ref) == "250")
    portal_reads = len([r for r in apollo.requests if r.path.endswith("/releases/latest")])
    for _ in range(100):
        engine.backend.get(ref)  # the read path: memory only
    assert len([r for r in apollo.requests if r.path.endswith("/releases/latest")]) == portal_reads


# --- the checks that stand in for compare-and-set --------------------------------------------


def unwatched(fake: FakeApollo, **overrides: Any) -> ApolloBackend:
    return ApolloBackend(ApolloSettings.from_section(section(fake, watch=False, **overrides)))


def test_a_release_made_in_apollo_since_the_read_is_refused_not_overwritten(
    apollo: FakeApollo,
) -> None:
    seed(apollo, "shop", "application", timeout="100", retries="3")
    backend = unwatched(apollo)
    try:
        ref = ConfigRef("shop", "prod", "application", "timeout")
        assert backend.get(ref) == "100"
        apollo.set_item(ENV, "shop", "default", "application", "timeout", "300")
        apollo.release(ENV, "shop", "default", "application")
        with pytest.raises(BackendError) as caught:
            backend.publish(ref, "200", actor="alice")
        assert caught.value.details["casFailed"] is True
        assert "changed in Apollo" in caught.value.message
        assert apollo.released(ENV, "shop", "default", "application") == {
            "timeout": "300",
            "retries": "3",
        }
        backend.publish(ref, "200", actor="alice")  # it has read the release now
        assert apollo.released(ENV, "shop", "default", "application") == {
            "timeout": "200",
            "retries": "3",
        }
    finally:
        backend.close()


def test_unreleased_edits_in_the_namespace_are_not_shipped_with_the_plan(
    apollo: FakeApollo, engine: GrayRelease
) -> None:
    seed(apollo, "shop", "application", timeout="100", retries="3")
    body = spec_body(
        appName="shop",
        groupName="application",
        configKeys=["timeout"],
        grayValues={"timeout": "200"},
    )
    plan = engine.start(engine.create_plan(body, actor="alice").id, actor="alice")
    apollo.set_item(ENV, "shop", "default", "application", "retries", "5")  # someone's draft
    with pytest.raises(BackendError) as caught:
        engine.complete(plan.id, actor="alice")
    assert "unreleased changes" in caught.value.message
    assert "retries" in caught.value.message
    assert engine.get_plan(plan.id).status is PlanStatus.ACTIVE
    assert apollo.released(ENV, "shop", "default", "application") == {
        "timeout": "100",
        "retries": "3",
    }
    assert apollo.items(ENV, "shop", "default", "application")["timeout"] == "100"
    assert [r.action for r in engine.plan_logs(plan.id).items][-1] == "COMPLETE_FAILED"


def test_an_item_refused_half_way_leaves_the_namespace_as_it_was(
    apollo: FakeApollo, engine: GrayRelease
) -> None:
    seed(apollo, "shop", "application", a="1", b="2")
    body = spec_body(
        appName="shop",
        groupName="application",
        configKeys=["a", "b"],
        grayValues={"a": "10", "b": "x" * 20_001},  # Apollo refuses a value over 20000
    )
    plan = engine.start(engine.create_plan(body, actor="alice").id, actor="alice")
    releases = len(apollo.releases(ENV, "shop", "default", "application"))
    with pytest.raises(BackendError) as caught:
        engine.complete(plan.id, actor="alice")
    assert "HTTP 400" in caught.value.message
    assert apollo.items(ENV, "shop", "default", "application") == {"a": "1", "b": "2"}
    assert len(apollo.releases(ENV, "shop", "default", "application")) == releases
    assert engine.get_plan(plan.id).status is PlanStatus.ACTIVE


class FlakyReleases(FakeApollo):
    """Apollo whose next release fails: refused before it happens, or done and the answer
    lost (the client times out waiting)."""

    next_release = ""

    def _create_release(self, request: Any, apps: frozenset[str], where: Any) -> Any:
        mode, self.next_release = self.next_release, ""
        if mode == "refuse":
            raise _server_error("Connection is not available", "java.sql.SQLException")
        answer = super()._create_release(request, apps, where)
        if mode == "lose":
            time.sleep(LOST_AFTER)
        return answer


LOST_AFTER = 1.0


@pytest.fixture
def flaky(clock: ManualClock) -> Iterator[FlakyReleases]:
    with FlakyReleases(tokens={TOKEN: APPS}, config_env=ENV, hold=0.3) as fake:
        fake.create_namespace(ENV, "shop", "default", "application")
        seed(fake, "shop", "application", a="1", b="2")
        yield fake


def flaky_plan(fake: FakeApollo, tmp_path: Path, clock: ManualClock) -> tuple[GrayRelease, str]:
    gr = GrayRelease.from_settings(
        settings(fake, tmp_path, timeout=LOST_AFTER / 2),
        clock=clock,
        plugins=(apollo_plugin,),
        load_entrypoints=False,
    )
    body = spec_body(
        appName="shop",
        groupName="application",
        configKeys=["a", "b"],
        grayValues={"a": "10", "b": "20"},
    )
    return gr, gr.start(gr.create_plan(body, actor="alice").id, actor="alice").id


def test_a_release_refused_after_the_items_were_written_undoes_them(
    flaky: FlakyReleases, tmp_path: Path, clock: ManualClock
) -> None:
    gr, plan_id = flaky_plan(flaky, tmp_path, clock)
    with gr:
        flaky.next_release = "refuse"
        with pytest.raises(BackendError) as caught:
            gr.complete(plan_id, actor="alice")
        assert "HTTP 500: Connection is not available" in caught.value.message
        assert flaky.items(ENV, "shop", "default", "application") == {"a": "1", "b": "2"}
        assert flaky.released(ENV, "shop", "default", "application") == {"a": "1", "b": "2"}
        assert gr.get_plan(plan_id).status is PlanStatus.ACTIVE
        gr.complete(plan_id, actor="alice")  # Apollo is back: it goes through
        assert flaky.released(ENV, "shop", "default", "application") == {"a": "10", "b": "20"}


def test_a_release_whose_answer_was_lost_is_found_and_not_repeated(
    flaky: FlakyReleases, tmp_path: Path, clock: ManualClock
) -> None:
    gr, plan_id = flaky_plan(flaky, tmp_path, clock)
    with gr:
        flaky.next_release = "lose"
        gr.complete(plan_id, actor="alice")
        assert gr.get_plan(plan_id).status is PlanStatus.COMPLETED
        assert flaky.released(ENV, "shop", "default", "application") == {"a": "10", "b": "20"}
        assert len(flaky.releases(ENV, "shop", "default", "application")) == 2


# --- faults -------------------------------------------------------------------------------------


def test_every_fault_is_a_backend_error_naming_the_server_and_the_cause(
    apollo: FakeApollo,
) -> None:
    ref = ConfigRef("shop", "prod", "application", "k")

    def failure(made: ApolloBackend, call: Callable[[ApolloBackend], object]) -> str:
        try:
            with pytest.raises(BackendError) as caught:
                call(made)
            return caught.value.message
        finally:
            made.close()

    def read(made: ApolloBackend) -> object:
        return made.get(ref)

    def write(made: ApolloBackend) -> None:
        made.publish(ConfigRef("elsewhere", "prod", "application", "k"), "v", actor="alice")

    closed = free_port()
    down = failure(unwatched(apollo, portal=f"http://127.0.0.1:{closed}"), read)
    assert f"Apollo portal at http://127.0.0.1:{closed}" in down
    assert "cannot connect" in down
    wrong = failure(unwatched(apollo, token="not-a-token"), read)
    assert "consumer token was refused (401)" in wrong
    assert "not-a-token" not in wrong
    apollo.create_namespace(ENV, "elsewhere", "default", "application")
    denied = failure(unwatched(apollo), write)  # our token may not touch that app
    assert "access denied (403)" in denied
    nobody = failure(unwatched(apollo, operator="nobody"), lambda b: b.publish(ref, "v", actor="x"))
    assert "HTTP 400" in nobody
    apollo.hang()
    assert "no answer" in failure(unwatched(apollo, timeout=0.3), read)
    apollo.heal()


def test_the_backend_is_an_installed_entry_point(
    apollo: FakeApollo, tmp_path: Path, clock: ManualClock
) -> None:
    """Installed, the adapter needs no plugins= argument: the grayrelease entry point."""
    with GrayRelease.from_settings(settings(apollo, tmp_path), clock=clock) as gr:
        assert gr.backend.name == "apollo"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"token": ""}, "settings.apollo.token"),
        ({"portal": "apollo:8070"}, "settings.apollo.portal"),
        ({"cluster": "a b"}, "settings.apollo.cluster"),
        ({"app_id": "{tenant}"}, "settings.apollo.app_id"),
        ({"namespace": ""}, "settings.apollo.namespace"),
        ({"envs": {"prod": "P R O"}}, "settings.apollo.envs.prod"),
        ({"config_services": {"PRO": "ftp://x"}}, "settings.apollo.config_services.PRO"),
        ({"access_keys": {"shop": 1}}, "settings.apollo.access_keys.shop"),
        ({"timeout": 0}, "settings.apollo.timeout"),
        ({"watch": "yes"}, "settings.apollo.watch"),
        ({"meta": "x"}, "settings.apollo.meta"),
    ],
)
def test_bad_settings_fail_at_start_up(overrides: dict[str, Any], field: str) -> None:
    apollo = {"token": TOKEN, **overrides}
    with pytest.raises(ValidationError) as caught:
        GrayRelease.from_settings(
            {"backend": "apollo", "apollo": apollo, "database_url": "sqlite://"},
            plugins=(apollo_plugin,),
            load_entrypoints=False,
        )
    assert caught.value.field == field


def test_the_token_is_required() -> None:
    with pytest.raises(ValidationError) as caught:
        ApolloSettings.from_section({})
    assert caught.value.field == "settings.apollo.token"
