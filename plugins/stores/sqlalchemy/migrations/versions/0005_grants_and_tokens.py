"""grants of roles per app and environment; API tokens (hashed)

Revision ID: 0005
Revises: 0004

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LONG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def key(length: int) -> sa.types.TypeEngine[str]:
    """Compared byte for byte on MySQL (its default collation ignores case)."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "gray_release_grant",
        sa.Column("id", LONG_ID, autoincrement=True, nullable=False),
        sa.Column("actor", key(128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("app_name", key(128), nullable=False),
        sa.Column("environment", key(128), nullable=False),
        sa.Column("granted_by", sa.String(length=128), nullable=False),
        sa.Column("granted_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gray_release_grant")),
        sa.UniqueConstraint(
            "actor",
            "role",
            "app_name",
            "environment",
            name=op.f("uq_gray_release_grant_actor_role_app_name_environment"),
        ),
    )
    op.create_table(
        "gray_release_token",
        sa.Column("id", key(32), nullable=False),
        sa.Column("token_hash", key(64), nullable=False),
        sa.Column("actor", key(128), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("revoked_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gray_release_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_gray_release_token_token_hash")),
    )
    with op.batch_alter_table("gray_release_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gray_release_token_actor"), ["actor"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("gray_release_token")
    op.drop_table("gray_release_grant")
