"""audit chain: a marker for linking the rows from before the chain, once

Revision ID: 0008
Revises: 0007

Before this revision the store linked every row without a place in the chain whenever the
chain's head stood at zero, so anyone who could write the database could clear every link,
reset the head, and have the next process re-link (and, with ``audit.key``, sign) rows they
had changed. Now the store links such rows only while ``legacy_pending`` is true, and only
this migration sets it: on a database that still holds rows from before the chain (upgraded
from before 0004 and not yet opened by the store). The store clears it when it links them and
records how far (``legacy_seq``) and when (``legacy_at``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("gray_release_audit_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("legacy_pending", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("legacy_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("legacy_at", UTC_DATETIME, nullable=True))
    conn = op.get_bind()
    head = sa.table(
        "gray_release_audit_head",
        sa.column("id", sa.Integer()),
        sa.column("seq", sa.BigInteger()),
        sa.column("legacy_pending", sa.Boolean()),
    )
    log = sa.table("gray_release_log", sa.column("seq", sa.BigInteger()))
    started = conn.scalar(sa.select(head.c.seq).where(head.c.id == 1))
    unlinked = conn.scalar(sa.select(sa.func.count()).select_from(log).where(log.c.seq.is_(None)))
    linked = conn.scalar(sa.select(sa.func.count()).select_from(log).where(log.c.seq.isnot(None)))
    if started == 0 and unlinked and not linked:
        conn.execute(sa.update(head).where(head.c.id == 1).values(legacy_pending=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("gray_release_audit_head", schema=None) as batch_op:
        batch_op.drop_column("legacy_at")
        batch_op.drop_column("legacy_seq")
        batch_op.drop_column("legacy_pending")
