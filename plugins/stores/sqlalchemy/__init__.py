"""The built-in plan store: SQLAlchemy 2 on a SQLite file by default, or any database URL."""

from __future__ import annotations

from grayrelease_core import Settings, hookimpl
from grayrelease_core.sql import make_engine

from .store import SqlPlanStore

__all__ = ["SqlPlanStore"]


@hookimpl(trylast=True)
def grayrelease_make_store(settings: Settings) -> SqlPlanStore:
    """The store of last resort: any SQLAlchemy URL (another plugin may claim a URL first)."""
    store = SqlPlanStore(make_engine(settings.database_url))
    store.create_schema()
    return store
