"""judge: when the current stage began, the last pass, sequential evidence; counted samples

Revision ID: 0009
Revises: 0008

A look judges only samples since the current stage (step) began, and a plan with checks steps
or completes only on a pass taken in that stage (``stage_started_at``, ``passed_at``). Rate
checks keep their anytime-valid sequential evidence between looks (``evidence``). A pushed
sample may carry counts: ``events`` out of ``total`` (errors of requests).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("gray_release_plan", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage_started_at", UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column("passed_at", UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
    with op.batch_alter_table("gray_release_monitor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_count", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("event_total", sa.Double(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("gray_release_monitor", schema=None) as batch_op:
        batch_op.drop_column("event_total")
        batch_op.drop_column("event_count")
    with op.batch_alter_table("gray_release_plan", schema=None) as batch_op:
        batch_op.drop_column("evidence")
        batch_op.drop_column("passed_at")
        batch_op.drop_column("stage_started_at")
