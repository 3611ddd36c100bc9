"""Alembic migrations on every database: up, down, up again, and in step with the models."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from grayrelease_plugins.backends.sql import backend_migrations
from grayrelease_plugins.backends.sql.tables import Base as BackendBase
from grayrelease_plugins.stores.sqlalchemy import store_migrations
from grayrelease_plugins.stores.sqlalchemy.tables import Base as StoreBase
from sqlalchemy import Engine, MetaData, inspect

from grayrelease_core import ConfigurationError, GrayRelease
from grayrelease_core.migrations import MigrationSet, current, downgrade, head, upgrade
from grayrelease_core.sql import make_engine

STORE_TABLES = {
    "gray_release_plan",
    "gray_release_detail",
    "gray_release_log",
    "gray_release_monitor",
    "gray_release_instance",
    "gray_release_meta",
}
BACKEND_TABLES = {"gray_config_value", "gray_config_revision"}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def pending_diff(migrations: MigrationSet, metadata: MetaData) -> list[object]:
    with migrations.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": migrations.version_table,
                "compare_type": True,
                "include_name": lambda name, type_, parent: (
                    type_ != "table" or name in metadata.tables
                ),
            },
        )
        return list(compare_metadata(context, metadata))


def test_upgrade_downgrade_upgrade_on_an_empty_database(engine: Engine) -> None:
    store, backend = store_migrations(engine), backend_migrations(engine)
    assert current(store) is None
    upgrade(store)
    upgrade(backend)
    assert current(store) == head(store) == "0001"
    assert current(backend) == head(backend)
    assert tables(engine) >= STORE_TABLES | BACKEND_TABLES

    downgrade(backend)
    downgrade(store)
    assert current(store) is None
    assert not (STORE_TABLES | BACKEND_TABLES) & tables(engine)

    upgrade(store)
    upgrade(backend)
    assert tables(engine) >= STORE_TABLES | BACKEND_TABLES
    with GrayRelease.from_settings(
        {
            "database_url": str(engine.url.render_as_string(hide_password=False)),
            "backend": "sql",
            "background_sync": False,
        },
        load_entrypoints=False,
    ) as gr:
        assert gr.list_plans().total == 0  # the generation row the migration seeds is there


@pytest.mark.parametrize(
    ("factory", "metadata"),
    [(store_migrations, StoreBase.metadata), (backend_migrations, BackendBase.metadata)],
)
def test_models_and_migrations_agree(
    engine: Engine, factory: Callable[[Engine], MigrationSet], metadata: MetaData
) -> None:
    migrations = factory(engine)
    upgrade(migrations)
    assert pending_diff(migrations, metadata) == []


def test_a_schema_behind_is_refused_when_auto_migrate_is_off(db_url: str) -> None:
    settings = {"database_url": db_url, "background_sync": False, "auto_migrate": False}
    with pytest.raises(ConfigurationError) as caught:
        GrayRelease.from_settings(settings, load_entrypoints=False)
    assert "grayrelease db upgrade" in caught.value.message
    assert caught.value.details == {"current": None, "head": "0001"}


def test_the_host_alembic_version_table_is_left_alone(engine: Engine) -> None:
    upgrade(store_migrations(engine))
    assert "alembic_version" not in tables(engine)
    assert "gray_release_alembic_version" in tables(engine)
