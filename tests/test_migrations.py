"""Alembic migrations on every database: up, down, up again, and in step with the models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from grayrelease_plugins.backends.sql import backend_migrations
from grayrelease_plugins.backends.sql.tables import Base as BackendBase
from grayrelease_plugins.stores.sqlalchemy import store_migrations
from grayrelease_plugins.stores.sqlalchemy.store import SqlPlanStore
from grayrelease_plugins.stores.sqlalchemy.tables import Base as StoreBase
from sqlalchemy import JSON, Connection, Engine, MetaData, column, insert, inspect, table

from grayrelease_core import ConfigurationError, GrayRelease
from grayrelease_core.migrations import (
    MigrationSet,
    current,
    downgrade,
    head,
    is_grayrelease_table,
    prepare_schema,
    upgrade,
)
from grayrelease_core.sql import make_engine
from grayrelease_core.store import LogQuery

from .conftest import spec_body

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
    assert current(store) == head(store) == "0009"
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
        plans = gr._store
        assert plans.generation() == 0  # the migration seeds the generation row
        gr.create_plan(spec_body(), actor="a")
        assert plans.generation() == 1
        plans.bump_generation()
        assert plans.generation() == 2


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
    assert caught.value.details == {"current": None, "head": "0009"}


def insert_old_plan(conn: Connection) -> None:
    """Plan p1 as the first migration's columns hold it: ACTIVE at 10%, version 3."""
    columns = (
        "id, plan_name, app_name, environment, group_name, gray_strategy, gray_rules, status, "
        "percentage, current_step, description, created_by, updated_by, created_at, updated_at, "
        "version"
    )
    conn.exec_driver_sql(
        f"INSERT INTO gray_release_plan ({columns}) VALUES ('p1', 'n', 'shop', 'prod', "
        "'default', 'PERCENTAGE', '{\"percentage\": 10, \"stickiness\": \"instanceId\"}', "
        "'ACTIVE', 10, 0, '', 'a', 'a', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 3)"
    )


def test_0002_keeps_plans_written_before_it_and_gives_them_empty_analysis(
    engine: Engine,
) -> None:
    migrations = store_migrations(engine)
    upgrade(migrations, "0001")
    with engine.begin() as conn:
        insert_old_plan(conn)
        conn.exec_driver_sql(
            "INSERT INTO gray_release_log (plan_id, action, actor, at, message) "
            "VALUES ('p1', 'STARTED', 'a', '2026-01-01 00:00:00', '')"
        )
    upgrade(migrations)
    store = SqlPlanStore(engine)
    plan = store.get_plan("p1")
    assert plan is not None
    assert (plan.version, plan.progress.percentage, plan.progress.analyses) == (3, 10.0, 0)
    assert (plan.progress.failures, plan.auto_rollback, plan.start_at) == (0, None, None)
    assert store.list_logs("p1").items[0].details is None
    downgrade(migrations, "0001")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version FROM gray_release_plan").scalar() == 3


def test_0004_chains_the_rows_written_before_it_and_names_their_app(engine: Engine) -> None:
    migrations = store_migrations(engine)
    upgrade(migrations, "0003")
    with engine.begin() as conn:
        insert_old_plan(conn)
        log = table(
            "gray_release_log",
            column("plan_id"),
            column("action"),
            column("actor"),
            column("at"),
            column("message"),
            column("before", JSON()),
        )
        at = datetime(2026, 1, 1)
        conn.execute(
            insert(log),
            [
                {"plan_id": "p1", "action": "CREATED", "actor": "a", "at": at, "message": ""},
                {"plan_id": "p1", "action": "STARTED", "actor": "a", "at": at, "message": ""},
            ],
        )
        conn.execute(  # a deleted plan's row: its app comes from its snapshot
            insert(log).values(
                plan_id="gone",
                action="DELETED",
                actor="a",
                at=at,
                message="",
                before={"appName": "cart", "environment": "test"},
            )
        )
    upgrade(migrations)
    store = SqlPlanStore(engine)
    store.start_audit_chain(datetime(2026, 2, 1, tzinfo=UTC))
    store.start_audit_chain(datetime(2026, 2, 2, tzinfo=UTC))  # a second process: no change
    rows = store.find_logs(LogQuery(newest_first=False)).items
    assert [(r.seq, r.app_name, r.environment) for r in rows] == [
        (1, "shop", "prod"),
        (2, "shop", "prod"),
        (3, "cart", "test"),
    ]
    assert store.verify_audit(datetime.now(UTC)).ok
    downgrade(migrations, "0003")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM gray_release_log").scalar() == 3


def test_the_host_alembic_version_table_is_left_alone(engine: Engine) -> None:
    upgrade(store_migrations(engine))
    assert "alembic_version" not in tables(engine)
    assert "gray_release_alembic_version" in tables(engine)


def test_a_sqlite_batch_migration_that_recreates_a_table_keeps_the_rows_pointing_at_it(
    sqlite_url: str,
) -> None:
    # SQLite only: it is the database where Alembic alters a table by copying and dropping it.
    from alembic.operations import Operations

    from grayrelease_core.migrations import _locked

    settings = {"database_url": sqlite_url, "background_sync": False}
    with GrayRelease.from_settings(settings, load_entrypoints=False) as gr:
        plan = gr.create_plan(spec_body(), actor="a")
        engine = make_engine(sqlite_url)
        try:
            with _locked(store_migrations(engine)) as conn:
                operations = Operations(MigrationContext.configure(conn))
                with operations.batch_alter_table("gray_release_plan", recreate="always"):
                    pass
        finally:
            engine.dispose()
        assert gr.get_plan(plan.id).config_keys == ("database.url", "database.username")


def test_a_schema_newer_than_the_code_is_refused_without_touching_it(engine: Engine) -> None:
    migrations = store_migrations(engine)
    upgrade(migrations)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE gray_release_alembic_version SET version_num = '0099'")
    for auto in (True, False):
        with pytest.raises(ConfigurationError) as caught:
            prepare_schema(migrations, auto_migrate=auto)
        assert "newer than this version" in caught.value.message
    assert current(migrations) == "0099"


def test_a_host_autogenerate_can_leave_our_tables_alone(engine: Engine) -> None:
    upgrade(store_migrations(engine))
    host = MetaData()  # a host app with no tables of its own yet
    with engine.connect() as conn:
        naive = compare_metadata(MigrationContext.configure(conn), host)
        filtered = compare_metadata(
            MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda name, type_, parent: (
                        not (type_ == "table" and is_grayrelease_table(name))
                    )
                },
            ),
            host,
        )
    assert any(diff[0] == "remove_table" for diff in naive)  # without the filter: drops ours
    assert filtered == []
