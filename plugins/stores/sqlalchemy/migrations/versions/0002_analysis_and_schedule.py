"""analysis progress, scheduled start, verdict details, sample retention index

Revision ID: 0002
Revises: 0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("gray_release_plan", schema=None) as batch_op:
        batch_op.add_column(sa.Column("analyses", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("failed_intervals", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("analyzed_at", UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column("top_reached_at", UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column("auto_rollback", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("start_at", UTC_DATETIME, nullable=True))

    with op.batch_alter_table("gray_release_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=True))

    with op.batch_alter_table("gray_release_monitor", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gray_release_monitor_sampled_at"), ["sampled_at"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("gray_release_monitor", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gray_release_monitor_sampled_at"))

    with op.batch_alter_table("gray_release_log", schema=None) as batch_op:
        batch_op.drop_column("details")

    with op.batch_alter_table("gray_release_plan", schema=None) as batch_op:
        batch_op.drop_column("start_at")
        batch_op.drop_column("auto_rollback")
        batch_op.drop_column("top_reached_at")
        batch_op.drop_column("analyzed_at")
        batch_op.drop_column("failed_intervals")
        batch_op.drop_column("analyses")
