"""The built-in plan store: SQLAlchemy 2 on a SQLite file by default, or any database URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from grayrelease_core import Settings, hookimpl
from grayrelease_core.audit import audit_key, checkpoint_every
from grayrelease_core.clock import SystemClock
from grayrelease_core.migrations import MigrationSet, prepare_schema
from grayrelease_core.sql import make_engine

from .store import SqlPlanStore

__all__ = ["SqlPlanStore", "store_migrations"]

MIGRATIONS = str(Path(__file__).parent / "migrations")


def store_migrations(engine: Engine) -> MigrationSet:
    """The plan store's tables, in their own Alembic history."""
    return MigrationSet("plan store", MIGRATIONS, "gray_release_alembic_version", engine)


@hookimpl(trylast=True)
def grayrelease_make_store(settings: Settings) -> SqlPlanStore:
    """The store of last resort: any SQLAlchemy URL (another plugin may claim a URL first)."""
    key = audit_key(settings.section("audit"))
    every = checkpoint_every(settings.section("audit"))
    engine = make_engine(settings.database_url)
    try:
        prepare_schema(store_migrations(engine), auto_migrate=settings.auto_migrate)
        store = SqlPlanStore(engine, audit_key=key, checkpoint_every=every)
        store.start_audit_chain(SystemClock().now())
    except BaseException:
        engine.dispose()
        raise
    return store


@hookimpl
def grayrelease_register_migrations(settings: Settings) -> list[MigrationSet]:
    return [store_migrations(make_engine(settings.database_url))]
