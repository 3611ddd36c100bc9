"""Schema migrations (Alembic) for plugins that keep tables: run, undo, report.

Each plugin with tables contributes a :class:`MigrationSet` through
``grayrelease_register_migrations``: its own script folder and its own version table, so
that the library's migrations never collide with a host's own Alembic history.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, text

from .errors import ConfigurationError
from .sql import IMMEDIATE


@attrs.frozen
class MigrationSet:
    """One plugin's migrations and the database they apply to."""

    name: str
    """Shown by ``grayrelease db current``, e.g. ``store``."""
    script_location: str
    """The folder holding ``env.py`` and ``versions/``."""
    version_table: str
    """Where Alembic records the applied revision (unique per set)."""
    engine: Engine
    """The database the set's tables live in."""


def upgrade(migrations: MigrationSet, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; safe when several processes start at once."""
    with _locked(migrations) as conn:
        command.upgrade(_config(migrations, conn), revision)


def downgrade(migrations: MigrationSet, revision: str = "base") -> None:
    """Undo migrations down to ``revision`` (``base`` drops every table of the set)."""
    with _locked(migrations) as conn:
        command.downgrade(_config(migrations, conn), revision)


def current(migrations: MigrationSet) -> str | None:
    """The applied revision, or ``None`` for a database the set has never touched."""
    with migrations.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": migrations.version_table})
        return context.get_current_revision()


def head(migrations: MigrationSet) -> str | None:
    """The newest revision the installed code knows."""
    return ScriptDirectory(migrations.script_location).get_current_head()


def prepare_schema(migrations: MigrationSet, *, auto_migrate: bool) -> None:
    """At start: migrate to head, or (``auto_migrate`` off) refuse a schema that is behind."""
    applied, wanted = current(migrations), head(migrations)
    if applied is not None and not _known(migrations, applied):
        # A newer release migrated this database (a rolling deploy, or a rollback of the code).
        raise ConfigurationError(
            f"the {migrations.name} schema is at revision {applied}, newer than this version "
            f"knows (head {wanted}); run the newer release, or downgrade the schema with it",
            details={"current": applied, "head": wanted},
        )
    if auto_migrate:
        upgrade(migrations)
        return
    if applied != wanted:
        raise ConfigurationError(
            f"the {migrations.name} schema is at revision {applied or 'none'}, this version needs "
            f"{wanted}; run `grayrelease db upgrade` (or turn auto_migrate on)",
            details={"current": applied, "head": wanted},
        )


def is_grayrelease_table(name: str | None) -> bool:
    """Whether ``name`` is one of this library's tables (its version tables included).

    For a host's own Alembic ``env.py``, so that its autogenerate neither proposes to drop
    these tables nor to manage them: ``include_name=lambda name, type_, parent: not
    (type_ == "table" and is_grayrelease_table(name))``.
    """
    return bool(name) and str(name).startswith(("gray_release_", "gray_config_"))


def _known(migrations: MigrationSet, revision: str) -> bool:
    try:
        return ScriptDirectory(migrations.script_location).get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for a revision it does not know
        return False


def run_env(context: Any, metadata: MetaData) -> None:
    """The body of every ``env.py``: migrate on the connection ``upgrade`` handed over."""
    connection: Connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=context.config.get_main_option("version_table"),
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
        include_name=lambda name, type_, parent: type_ != "table" or name in metadata.tables,
    )
    with context.begin_transaction():
        context.run_migrations()


def _config(migrations: MigrationSet, conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", migrations.script_location)
    config.set_main_option("version_table", migrations.version_table)
    config.attributes["connection"] = conn
    return config


@contextmanager
def _locked(migrations: MigrationSet) -> Iterator[Connection]:
    """A connection holding the database's migration lock for this set until it commits."""
    engine = migrations.engine
    key = zlib.crc32(migrations.version_table.encode())
    dialect = engine.dialect.name
    if dialect == "sqlite":
        with engine.connect() as conn:
            # Off before BEGIN (SQLite ignores it inside a transaction): a batch migration
            # recreates a table by dropping it, and with foreign keys on that drop would
            # cascade into the rows that point at it.
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                conn.execution_options(**{IMMEDIATE: True})  # one migrator at a time
                with conn.begin():
                    yield conn
            finally:
                raw.execute("PRAGMA foreign_keys=ON")
    elif dialect == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield conn
    elif dialect in ("mysql", "mariadb"):
        with engine.connect() as conn:
            got = conn.scalar(
                text("SELECT GET_LOCK(:name, 120)"), {"name": migrations.version_table}
            )
            conn.commit()  # the lock is the session's; end the implicit transaction
            if got != 1:
                raise ConfigurationError(
                    f"another process has held the {migrations.name} migration lock for two "
                    "minutes; try again when its migration is done"
                )
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": migrations.version_table})
                conn.commit()
    else:
        with engine.begin() as conn:
            yield conn
