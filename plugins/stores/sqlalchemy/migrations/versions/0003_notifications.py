"""notification outbox, delivery attempts, in-system messages, a plan's routing

Revision ID: 0003
Revises: 0002

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LONG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def key(length: int) -> sa.types.TypeEngine[str]:
    """Compared byte for byte on MySQL (its default collation ignores case)."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "gray_release_notification",
        sa.Column("id", key(64), nullable=False),
        sa.Column("plan_id", key(64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=False),
        sa.Column("lease_until", UTC_DATETIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("delivered_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gray_release_notification")),
    )
    with op.batch_alter_table("gray_release_notification", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gray_release_notification_state_next_attempt_at"),
            ["state", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_gray_release_notification_plan_id_created_at"),
            ["plan_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "gray_release_notification_attempt",
        sa.Column("id", LONG_ID, autoincrement=True, nullable=False),
        sa.Column("notification_id", key(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gray_release_notification_attempt")),
    )
    with op.batch_alter_table("gray_release_notification_attempt", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gray_release_notification_attempt_notification_id_number"),
            ["notification_id", "number"],
            unique=False,
        )

    op.create_table(
        "gray_release_message",
        sa.Column("id", LONG_ID, autoincrement=True, nullable=False),
        sa.Column("recipient", key(254), nullable=False),
        sa.Column("notification_id", key(64), nullable=False),
        sa.Column("plan_id", key(64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("read_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gray_release_message")),
        sa.UniqueConstraint(
            "notification_id",
            "recipient",
            name=op.f("uq_gray_release_message_notification_id_recipient"),
        ),
    )
    with op.batch_alter_table("gray_release_message", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gray_release_message_recipient_read_at"),
            ["recipient", "read_at"],
            unique=False,
        )

    with op.batch_alter_table("gray_release_plan", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notify", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("gray_release_plan", schema=None) as batch_op:
        batch_op.drop_column("notify")
    op.drop_table("gray_release_message")
    op.drop_table("gray_release_notification_attempt")
    op.drop_table("gray_release_notification")
