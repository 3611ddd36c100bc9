"""Real databases for the tests: a fresh database per test on SQLite and MariaDB, a fresh
schema per test on PostgreSQL.

The servers are found through ``GRAYRELEASE_TEST_POSTGRES_URL`` / ``GRAYRELEASE_TEST_MYSQL_URL``
(defaults: the loopback servers of the project's machines). Outside CI an unreachable server
skips its tests with a message; under ``CI=true`` it fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "GRAYRELEASE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_URL = os.environ.get("GRAYRELEASE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
KINDS = ("sqlite", "postgresql", "mysql")


@cache
def unreachable(kind: str) -> str | None:
    """Why the server of ``kind`` cannot be used, or ``None`` when it can."""
    url = {"postgresql": POSTGRES_URL, "mysql": MYSQL_URL}[kind]
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means: not available here
        return f"{kind} at {make_url(url).render_as_string(hide_password=True)}: {exc}"
    finally:
        engine.dispose()
    return None


def require(kind: str) -> None:
    """Skip (or, under CI, fail) when the server of ``kind`` is not reachable."""
    if kind == "sqlite":
        return
    reason = unreachable(kind)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs every database server: {reason}")
    pytest.skip(f"database server not reachable: {reason}")


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database of ``kind``, dropped afterwards."""
    require(kind)
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'gray.db'}"
        return
    name = f"gr_test_{uuid.uuid4().hex[:16]}"
    if kind == "postgresql":
        with fresh_schema(name) as schema_url:
            yield schema_url
        return
    admin = create_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        # The server's default collation (case-insensitive), as a production database has:
        # the columns that must compare byte for byte say so themselves.
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = make_url(MYSQL_URL).set(database=name).update_query_dict({"charset": "utf8mb4"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@contextmanager
def fresh_schema(name: str) -> Iterator[str]:
    """PostgreSQL: a new schema that the URL's connections see first (``search_path``).

    As isolated as a new database for everything the library does (it never names a schema),
    at a fiftieth of the cost: ``CREATE DATABASE`` copies a template and waits for the disk.
    """
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()
