"""SQLAlchemy engines for the SQL-based plugins, with SQLite made safe for concurrent use.

SQLite: WAL (readers do not block the writer), foreign keys on, a busy timeout, and write
transactions opened with ``BEGIN IMMEDIATE`` so that two writers queue instead of failing
when both try to upgrade a read lock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool

from .errors import ValidationError

IMMEDIATE = "grayrelease_immediate"
AFTER_COMMIT = "grayrelease_after_commit"
RETRYABLE = frozenset({"40P01", "40001", 1213})
"""PostgreSQL deadlock / serialization failure; MySQL deadlock. (Not MySQL's lock wait
timeout: after 50 s of waiting, waiting again only makes a caller wait minutes.)"""
T = TypeVar("T")


def make_engine(url: str, field: str = "settings.database_url") -> Engine:
    """An engine for ``url``; a malformed URL is a validation error naming ``field``."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValidationError(field, f"is not a database URL ({exc})", value=url) from exc
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    options: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
    if parsed.database in (None, "", ":memory:"):
        options["poolclass"] = StaticPool  # one shared connection, or each would be a new database
    engine = create_engine(parsed, **options)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def shared_name(engine: Engine) -> str | None:
    """The engine's database as a name another engine's can be compared with (the password
    left out), or ``None`` when no other engine can reach it: an in-memory SQLite database
    lives only in the engine that made it."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return url.render_as_string(hide_password=True)


def run_write(engine: Engine, work: Callable[[Connection], T], *, attempts: int = 5) -> T:
    """Run ``work`` in a write transaction, again from the start if the database chose it as
    a deadlock or serialization victim (InnoDB does so when two inserts meet on one unique
    index). Each attempt is the whole transaction, so optimistic checks run again too."""
    for attempt in range(1, attempts + 1):
        committed: list[Callable[[], None]] = []  # an attempt rolled back drops its own
        try:
            with writing(engine) as conn:
                conn.info[AFTER_COMMIT] = committed
                try:
                    result = work(conn)
                finally:  # the pool keeps ``info`` with the connection for its next user
                    conn.info.pop(AFTER_COMMIT, None)
        except DBAPIError as exc:
            if attempt == attempts or not _victim(exc):
                raise
            time.sleep(random.uniform(0.005, 0.03) * attempt)
            continue
        for callback in committed:
            callback()
        return result
    raise AssertionError("unreachable")


def after_commit(conn: Connection, callback: Callable[[], None]) -> bool:
    """Call ``callback`` once the ``run_write`` transaction of ``conn`` has committed (never
    if it rolls back): for telling the world what is durable. ``False`` outside
    ``run_write``, and the callback is dropped."""
    pending = conn.info.get(AFTER_COMMIT)
    if pending is None:
        return False
    pending.append(callback)
    return True


def _victim(exc: DBAPIError) -> bool:
    original = exc.orig
    code = getattr(original, "sqlstate", None) or (getattr(original, "args", None) or [None])[0]
    return code in RETRYABLE


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed on success, rolled back on error."""
    with engine.connect() as conn:
        conn.execution_options(**{IMMEDIATE: True})
        with conn.begin():
            yield conn


@contextmanager
def captured_selects(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every SELECT ``engine`` sends while the block runs, as (driver SQL, parameters): for
    checking a query plan with EXPLAIN, or that a path sends no query at all."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
