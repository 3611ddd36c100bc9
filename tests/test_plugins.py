"""The plugin system: built-ins, entry points, blocking, duplicates, and each control hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from grayrelease_plugins.strategies.percentage import PercentageStrategy

from grayrelease_core import (
    Client,
    ConfigurationError,
    GrayRelease,
    PermissionDenied,
    Plan,
    PlanEvent,
    PlanStatus,
    hookimpl,
)
from grayrelease_core.plugin_manager import DEFAULT_PLUGINS, DISABLE_ENV, make_plugin_manager

from .conftest import Factory, ref, spec_body
from .plugins import sample_strategy


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """These tests are about input and plugins, not databases: SQLite is enough."""
    return sqlite_url


@pytest.fixture
def installed_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A distribution on sys.path that declares the sample plugin in the ``grayrelease`` group."""
    info = tmp_path / "gray_sample-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gray-sample\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[grayrelease]\nsample = tests.plugins.sample_strategy\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "sample"


def test_every_default_plugin_is_registered_by_its_module_path() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    assert [name for name in DEFAULT_PLUGINS if pm.get_plugin(name) is None] == []
    assert "grayrelease_plugins.strategies.percentage" in DEFAULT_PLUGINS


def test_each_factory_call_builds_a_fresh_manager() -> None:
    assert make_plugin_manager(load_entrypoints=False) is not make_plugin_manager(
        load_entrypoints=False
    )


def test_the_core_imports_no_plugin_or_adapter_module() -> None:
    core = Path(__file__).parent.parent / "grayrelease_core"
    offenders = [
        path.name
        for path in core.glob("*.py")
        if "import grayrelease_plugins" in path.read_text()
        or "from grayrelease_plugins" in path.read_text()
        or "grayrelease_adapters" in path.read_text()
    ]
    assert offenders == []


def test_entry_point_plugins_are_loaded(
    installed_sample: str, make_gr: Factory, db_url: str, clock: Any
) -> None:
    gr = GrayRelease.from_settings({"database_url": db_url, "background_sync": False}, clock=clock)
    try:
        assert "INSTANCE_PREFIX" in gr.strategies.names
        plan = gr.create_plan(
            spec_body(grayStrategy="INSTANCE_PREFIX", grayRules={"prefix": "canary-"}), actor="a"
        )
        gr.start(plan.id, actor="a")
        assert gr.resolve(ref("database.url"), Client("canary-1")).gray
        assert not gr.resolve(ref("database.url"), Client("web-1")).gray
    finally:
        gr.close()


def test_disabled_entry_point_plugins_are_not_loaded(
    installed_sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISABLE_ENV, f"other, {installed_sample}")
    pm = make_plugin_manager()
    assert pm.get_plugin(installed_sample) is None
    assert pm.is_blocked(installed_sample)


def test_duplicate_strategy_name_is_a_startup_error_naming_both_plugins(db_url: str) -> None:
    class Impostor:
        @hookimpl
        def grayrelease_register_strategies(self) -> list[PercentageStrategy]:
            return [PercentageStrategy()]

    with pytest.raises(ConfigurationError) as caught:
        GrayRelease.from_settings(
            {"database_url": db_url, "background_sync": False},
            plugins=[Impostor()],
            load_entrypoints=False,
        )
    assert "grayrelease_plugins.strategies.percentage" in caught.value.message
    assert "PERCENTAGE" in caught.value.message
    assert len(caught.value.details["plugins"]) == 2


def test_a_registered_object_that_is_not_a_strategy_is_refused(db_url: str) -> None:
    class Broken:
        @hookimpl
        def grayrelease_register_strategies(self) -> list[object]:
            return [object()]

    with pytest.raises(ConfigurationError, match="not a strategy"):
        GrayRelease.from_settings(
            {"database_url": db_url, "background_sync": False},
            plugins=[Broken()],
            load_entrypoints=False,
        )


def test_plugin_objects_can_add_a_strategy(make_gr: Factory) -> None:
    gr = make_gr(plugins=(sample_strategy,))
    assert "INSTANCE_PREFIX" in gr.strategies.names


def test_hook_authorize_any_false_denies_everywhere(make_gr: Factory) -> None:
    calls: list[tuple[str, str, str | None]] = []

    class OnlyAliceReleases:
        @hookimpl
        def grayrelease_authorize(self, actor: str, action: str, plan: Plan | None) -> bool | None:
            calls.append((actor, action, plan.id if plan else None))
            if action in ("start", "complete", "rollback") and actor != "alice":
                return False
            return None

    class AllowsEverything:
        @hookimpl
        def grayrelease_authorize(self, actor: str, action: str, plan: Plan | None) -> bool:
            return True

    gr = make_gr(plugins=(OnlyAliceReleases(), AllowsEverything()))
    plan = gr.create_plan(spec_body(), actor="bob")
    with pytest.raises(PermissionDenied) as caught:
        gr.start(plan.id, actor="bob")
    assert caught.value.code == "PERMISSION_DENIED"
    assert caught.value.details == {
        "actor": "bob",
        "action": "start",
        "planId": plan.id,
        "appName": plan.app_name,
        "environment": plan.environment,
    }
    assert gr.get_plan(plan.id).status is PlanStatus.DRAFT
    assert gr.start(plan.id, actor="alice").status is PlanStatus.ACTIVE
    assert ("bob", "create", None) in calls
    assert ("alice", "start", plan.id) in calls


def test_hook_plan_event_runs_after_commit_and_cannot_break_an_action(
    make_gr: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, str, PlanStatus, PlanStatus | None]] = []

    class Recorder:
        @hookimpl
        def grayrelease_plan_event(self, event: PlanEvent) -> None:
            previous = event.previous.status if event.previous else None
            seen.append((event.action, event.actor, event.plan.status, previous))

    class Crashing:
        @hookimpl
        def grayrelease_plan_event(self, event: PlanEvent) -> None:
            raise RuntimeError("notifier down")

    gr = make_gr(plugins=(Recorder(), Crashing()))
    plan = gr.create_plan(spec_body(), actor="a")
    gr.start(plan.id, actor="b")
    gr.rollback(plan.id, actor="c")
    assert gr.get_plan(plan.id).status is PlanStatus.ROLLBACK
    assert seen == [
        ("CREATED", "a", PlanStatus.DRAFT, None),
        ("STARTED", "b", PlanStatus.ACTIVE, PlanStatus.DRAFT),
        ("ROLLED_BACK", "c", PlanStatus.ROLLBACK, PlanStatus.ACTIVE),
    ]
    failures = [
        r for r in caplog.records if r.levelname == "ERROR" and "failed on" in r.getMessage()
    ]
    assert [r.getMessage().rsplit(" ", 1)[-1] for r in failures] == [
        "CREATED",
        "STARTED",
        "ROLLED_BACK",
    ]


def test_hook_make_store_first_result_wins(make_gr: Factory, db_url: str) -> None:
    from grayrelease_plugins.stores.sqlalchemy import SqlPlanStore, store_migrations

    from grayrelease_core.migrations import prepare_schema
    from grayrelease_core.sql import make_engine

    made: list[str] = []

    class CountingStorePlugin:
        @hookimpl
        def grayrelease_make_store(self, settings: Any) -> SqlPlanStore:
            made.append(settings.database_url)
            engine = make_engine(settings.database_url)
            prepare_schema(store_migrations(engine), auto_migrate=True)
            return SqlPlanStore(engine)

    gr = make_gr(plugins=(CountingStorePlugin(),))
    assert made == [db_url]
    assert gr.create_plan(spec_body(), actor="a").status is PlanStatus.DRAFT


def test_hook_make_backend_for_an_unknown_name_is_a_settings_error(db_url: str) -> None:
    from grayrelease_core import ValidationError

    with pytest.raises(ValidationError) as caught:
        GrayRelease.from_settings(
            {"database_url": db_url, "backend": "etcd"}, load_entrypoints=False
        )
    assert caught.value.field == "settings.backend"


def test_a_plugin_with_an_unknown_hook_is_a_configuration_error(db_url: str) -> None:
    class Misspelled:
        @hookimpl
        def grayrelease_register_strategy(self) -> list[object]:
            return []

    with pytest.raises(ConfigurationError, match="does not fit the grayrelease hooks"):
        make_plugin_manager([Misspelled()], load_entrypoints=False)


def test_disabling_a_built_in_lets_a_plugin_replace_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "grayrelease_plugins.strategies.percentage")

    class MyPercentage(PercentageStrategy):
        pass

    class Replacement:
        @hookimpl
        def grayrelease_register_strategies(self) -> list[PercentageStrategy]:
            return [MyPercentage()]

    pm = make_plugin_manager([Replacement()], load_entrypoints=False)
    assert pm.get_plugin("grayrelease_plugins.strategies.percentage") is None
    from grayrelease_core.plugin_manager import collect
    from grayrelease_core.strategy import StrategyRegistry

    registry = StrategyRegistry.collect(collect(pm, "grayrelease_register_strategies"))
    assert isinstance(registry.get("PERCENTAGE"), MyPercentage)
