"""The spec's five tables, plus a generation counter, the notification outbox and the
in-system inbox, as SQLAlchemy 2.0 typed tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, with microseconds on every database."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use the injected clock")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
"""Config values: MySQL's TEXT stops at 64 KiB, and a value may be up to 1 MiB."""


def Key(length: int) -> TypeEngine[str]:  # noqa: N802 - reads as a type, like String
    """Ids, names and keys compared byte for byte: MySQL's default collation would make
    ``Pod-1`` and ``pod-1`` (or two config keys differing in case) one row."""
    return String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


LongId = BigInteger().with_variant(Integer, "sqlite")
"""Auto-increment ids: BIGINT, except SQLite, which only auto-increments INTEGER."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PlanRow(Base):
    """gray_release_plan: a release plan, its strategy, rules, state and progress."""

    __tablename__ = "gray_release_plan"

    id: Mapped[str] = mapped_column(Key(64), primary_key=True)
    plan_name: Mapped[str] = mapped_column(String(128))
    app_name: Mapped[str] = mapped_column(Key(128))
    environment: Mapped[str] = mapped_column(Key(128))
    group_name: Mapped[str] = mapped_column(Key(128))
    gray_strategy: Mapped[str] = mapped_column(String(64))
    gray_rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    percentage: Mapped[float] = mapped_column(Float, default=0.0)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    next_step_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    analyses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed_intervals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    analyzed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    top_reached_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stage_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When the current percentage took effect: looks judge samples from here on."""
    passed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """The last analysis that passed: a step or a completion needs one in its stage."""
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    """Rate checks' sequential evidence, by check index (``grayrelease_core.sequential``)."""
    auto_rollback: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notify: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The plan's own notification routing (NULL: the installation's default)."""
    start_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When the ticker starts this DRAFT plan (NULL: started by hand)."""
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    updated_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer)
    action_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The fence of publishing actions: raised by every claim, matched by its commit."""
    action_intent: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    """The publishing action under way (``Intent``), NULL when none is."""
    settle_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """Until when processes serve what the plan last published, while their backend
    mirrors catch up."""

    __table_args__ = (
        Index(None, "app_name", "environment", "status"),
        Index(None, "status"),
        Index(None, "created_at"),
    )


class DetailRow(Base):
    """gray_release_detail: one config key of a plan, its values and its own status."""

    __tablename__ = "gray_release_detail"

    id: Mapped[int] = mapped_column(LongId, primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(
        Key(64), ForeignKey("gray_release_plan.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    config_key: Mapped[str] = mapped_column(Key(256))
    gray_value: Mapped[str | None] = mapped_column(LongText)
    original_value: Mapped[str | None] = mapped_column(LongText)
    original_present: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    live_key: Mapped[str | None] = mapped_column(Key(64), unique=True)
    """Digest of (app, env, group, key) while the plan is live, else NULL: the database itself
    refuses two live plans on one key, even when two processes start them at once."""

    __table_args__ = (UniqueConstraint("plan_id", "config_key"),)


class LogRow(Base):
    """gray_release_log: the audit trail; rows are only ever inserted."""

    __tablename__ = "gray_release_log"

    id: Mapped[int] = mapped_column(LongId, primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(Key(64))
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    status_before: Mapped[str | None] = mapped_column(String(16))
    status_after: Mapped[str | None] = mapped_column(String(16))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Structured facts: an analysis verdict's inputs and statistics, a step's percentages."""
    app_name: Mapped[str | None] = mapped_column(Key(128))
    environment: Mapped[str | None] = mapped_column(Key(128))
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    """The row's place in the audit chain (NULL only on a row written around the store)."""
    row_hash: Mapped[str | None] = mapped_column(String(64))
    """Hash of the row's content and of the previous row's hash (grayrelease_core.audit)."""

    # The plan's trail, the time range, and the filters of GET /logs.
    __table_args__ = (
        Index(None, "plan_id", "id"),
        Index(None, "at"),
        Index(None, "actor", "id"),
        Index(None, "app_name", "environment", "id"),
        Index(None, "action", "id"),
    )


class AuditHeadRow(Base):
    """gray_release_audit_head: the audit chain's newest link (one row), locked by every
    transaction that appends to the chain, so links are made one after the other."""

    __tablename__ = "gray_release_audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    row_hash: Mapped[str] = mapped_column(String(64))
    legacy_pending: Mapped[bool] = mapped_column(Boolean, server_default=false())
    """Rows from before the chain wait to be linked. Only migration 0008 sets it (on a database
    that holds such rows); the store clears it when it links them. Without it, a row with no
    place in the chain is a break, never linked."""
    legacy_seq: Mapped[int | None] = mapped_column(BigInteger)
    """The last sequence number given to a row from before the chain (NULL: none were linked
    since migration 0008)."""
    legacy_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When those rows were linked."""


class MonitorRow(Base):
    """gray_release_monitor: metric samples of the gray set and the baseline."""

    __tablename__ = "gray_release_monitor"

    id: Mapped[int] = mapped_column(LongId, primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(Key(64))
    metric_name: Mapped[str] = mapped_column(String(128))
    gray: Mapped[bool] = mapped_column(Boolean)
    instance_id: Mapped[str | None] = mapped_column(Key(256))
    value: Mapped[float] = mapped_column(Float)
    sampled_at: Mapped[datetime] = mapped_column(UtcDateTime)
    event_count: Mapped[float | None] = mapped_column(Double)
    """For a counted sample: the events (errors) out of ``event_total`` (requests). Double
    precision: MySQL's FLOAT would round totals past 2**24."""
    event_total: Mapped[float | None] = mapped_column(Double)

    # The second index serves the retention purge, which deletes by age across all plans.
    __table_args__ = (
        Index(None, "plan_id", "metric_name", "sampled_at"),
        Index(None, "sampled_at"),
    )


class InstanceRow(Base):
    """gray_release_instance: which instances got a plan's gray value, when, how often."""

    __tablename__ = "gray_release_instance"

    plan_id: Mapped[str] = mapped_column(Key(64), primary_key=True)
    instance_id: Mapped[str] = mapped_column(Key(256), primary_key=True)
    instance_ip: Mapped[str] = mapped_column(String(64), default="")
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    hits: Mapped[int] = mapped_column(BigInteger, default=0)

    # list_instances pages a plan's instances in this order: without the index, a plan with
    # 100,000 instances is sorted in full (or the table scanned) for every page.
    __table_args__ = (Index(None, "plan_id", "first_seen", "instance_id"),)


class MetaRow(Base):
    """gray_release_meta: named counters; ``generation`` changes with every plan write."""

    __tablename__ = "gray_release_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class NotificationRow(Base):
    """gray_release_notification: the outbox; one message for one channel, written in the
    transaction of the event it tells of, and its delivery state."""

    __tablename__ = "gray_release_notification"

    id: Mapped[str] = mapped_column(Key(64), primary_key=True)
    plan_id: Mapped[str] = mapped_column(Key(64))
    event: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(64))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    message: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Tries so far; a claim increments it, and a worker's write must match it (the fence)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    # The worker looks for due ones by state and time; operators list a plan's.
    __table_args__ = (
        Index(None, "state", "next_attempt_at"),
        Index(None, "plan_id", "created_at"),
    )


class AttemptRow(Base):
    """gray_release_notification_attempt: every try at delivering a notification."""

    __tablename__ = "gray_release_notification_attempt"

    id: Mapped[int] = mapped_column(LongId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(Key(64))
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered: Mapped[bool] = mapped_column(Boolean)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index(None, "notification_id", "number"),)


class MessageRow(Base):
    """gray_release_message: in-system messages, one row per recipient."""

    __tablename__ = "gray_release_message"

    id: Mapped[int] = mapped_column(LongId, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(Key(254))
    notification_id: Mapped[str] = mapped_column(Key(64))
    plan_id: Mapped[str] = mapped_column(Key(64))
    event: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    """Markdown, as the robots get it."""
    link: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    # The unique pair makes a repeated delivery of one notification a no-op.
    __table_args__ = (
        UniqueConstraint("notification_id", "recipient"),
        Index(None, "recipient", "read_at"),
    )


class GrantRow(Base):
    """gray_release_grant: a role held by an actor for an app and an environment."""

    __tablename__ = "gray_release_grant"

    id: Mapped[int] = mapped_column(LongId, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(Key(128))
    role: Mapped[str] = mapped_column(String(16))
    app_name: Mapped[str] = mapped_column(Key(128))
    environment: Mapped[str] = mapped_column(Key(128))
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("actor", "role", "app_name", "environment"),)


class TokenRow(Base):
    """gray_release_token: API tokens, kept only as their SHA-256."""

    __tablename__ = "gray_release_token"

    id: Mapped[str] = mapped_column(Key(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(Key(64), unique=True)
    actor: Mapped[str] = mapped_column(Key(128))
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index(None, "actor"),)


class SessionRow(Base):
    """gray_release_session: console logins, so that a logout ends a copied cookie too."""

    __tablename__ = "gray_release_session"

    id: Mapped[str] = mapped_column(Key(32), primary_key=True)
    actor: Mapped[str] = mapped_column(Key(128))
    token_id: Mapped[str | None] = mapped_column(Key(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index(None, "expires_at"),)
