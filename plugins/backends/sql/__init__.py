"""``sql``: config values in a table, for hosts with no config center of their own.

Reads come from an in-memory mirror (the read path must not touch the database); the mirror
is reloaded when the table's revision counter moves, at most every ``cache_ttl``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite

from grayrelease_core import BackendError, ConfigRef, Settings, hookimpl
from grayrelease_core.migrations import MigrationSet, prepare_schema
from grayrelease_core.sql import make_engine, run_write, shared_name

from .tables import REVISION, ConfigRevisionRow, ConfigValueRow

MIGRATIONS = str(Path(__file__).parent / "migrations")


class SqlBackend:
    """Config values in ``gray_config_value``, mirrored in memory."""

    name = "sql"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.database_url = shared_name(engine)
        """Where the values are: when the plan store is there too, the engine publishes inside
        the store's transaction (``publish_in``). ``None`` for in-memory SQLite, which the
        store's engine cannot see."""
        self._lock = threading.Lock()
        self._mirror: dict[ConfigRef, str] = {}
        self._groups: dict[tuple[str, str, str], dict[str, str]] = {}
        """The mirror by group, so that listing one costs its own size."""
        self._revision: int | None = None
        self.refresh()

    def get(self, ref: ConfigRef) -> str | None:
        return self._mirror.get(ref)

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        try:
            run_write(self._engine, lambda conn: self.publish_in(conn, {ref: value}, actor=actor))
        except Exception as exc:
            raise BackendError(
                f"could not publish {ref.config_key} to the sql backend: {exc}"
            ) from exc
        self.refresh()

    def publish_in(
        self, connection: Connection, values: Mapping[ConfigRef, str | None], *, actor: str
    ) -> None:
        """Write ``values`` in the caller's transaction, and move the revision once."""
        for ref, value in values.items():
            if value is None:
                connection.execute(delete(ConfigValueRow).where(*_where(ref)))
            else:
                # One upsert: two processes publishing a new key at once must not collide.
                connection.execute(_upsert(connection.dialect.name, ref, value, actor))
        connection.execute(
            update(ConfigRevisionRow)
            .where(ConfigRevisionRow.name == REVISION)
            .values(value=ConfigRevisionRow.value + 1)
        )

    def group_values(
        self, app_name: str, environment: str, group_name: str
    ) -> tuple[dict[str, str], int]:
        """A group's values and the table's revision, from the mirror (for the
        Apollo-compatible client endpoint, which lists a namespace on every read)."""
        with self._lock:
            values, revision = self._groups.get((app_name, environment, group_name)), self._revision
        return dict(values or {}), revision or 0

    def refresh(self) -> None:
        with self._lock, self._engine.connect() as conn:
            revision = conn.scalar(
                select(ConfigRevisionRow.value).where(ConfigRevisionRow.name == REVISION)
            )
            if revision == self._revision:
                return
            rows = conn.execute(select(ConfigValueRow)).all()
            self._mirror = {
                ConfigRef(r.app_name, r.environment, r.group_name, r.config_key): r.value
                for r in rows
            }
            groups: dict[tuple[str, str, str], dict[str, str]] = {}
            for ref, value in self._mirror.items():
                groups.setdefault(ref[:3], {})[ref.config_key] = value
            self._groups = groups
            self._revision = revision

    def close(self) -> None:
        self._engine.dispose()


def _where(ref: ConfigRef) -> tuple[ColumnElement[bool], ...]:
    return (
        ConfigValueRow.app_name == ref.app_name,
        ConfigValueRow.environment == ref.environment,
        ConfigValueRow.group_name == ref.group_name,
        ConfigValueRow.config_key == ref.config_key,
    )


def _upsert(dialect: str, ref: ConfigRef, value: str, actor: str) -> Any:
    row = {**ref._asdict(), "value": value, "updated_by": actor}
    changes = {"value": value, "updated_by": actor}
    if dialect in ("mysql", "mariadb"):
        return mysql.insert(ConfigValueRow).values(row).on_duplicate_key_update(changes)
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        dialect_insert(ConfigValueRow)
        .values(row)
        .on_conflict_do_update(index_elements=list(ref._fields), set_=changes)
    )


def backend_migrations(engine: Engine) -> MigrationSet:
    """The sql backend's tables, in their own Alembic history."""
    return MigrationSet("sql backend", MIGRATIONS, "gray_config_alembic_version", engine)


def _engine(settings: Settings) -> Engine:
    url = settings.section("sql").get("database_url", settings.database_url)
    return make_engine(url, field="settings.sql.database_url")


@hookimpl
def grayrelease_make_backend(settings: Settings) -> SqlBackend | None:
    if settings.backend != "sql":
        return None
    engine = _engine(settings)
    try:
        prepare_schema(backend_migrations(engine), auto_migrate=settings.auto_migrate)
    except BaseException:
        engine.dispose()
        raise
    return SqlBackend(engine)


@hookimpl
def grayrelease_register_migrations(settings: Settings) -> list[MigrationSet]:
    return [backend_migrations(_engine(settings))] if settings.backend == "sql" else []
