"""action claims: a fence (epoch) and the open intent on each plan; settle time

Revision ID: 0006
Revises: 0005

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("gray_release_plan", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("action_epoch", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("action_intent", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("settle_until", UTC_DATETIME, nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("gray_release_plan", schema=None) as batch_op:
        batch_op.drop_column("settle_until")
        batch_op.drop_column("action_intent")
        batch_op.drop_column("action_epoch")
