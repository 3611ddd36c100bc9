"""audit chain: sequence numbers and hashes on log rows, the chain's head; app and
environment on log rows (filled from the rows' plan snapshots)

Revision ID: 0004
Revises: 0003

The links of the rows already there are made by the store when it first opens the database
(it knows the installation's ``audit.key``); this migration prepares the columns and an
empty head.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
BATCH = 1000


def key(length: int) -> sa.types.TypeEngine[str]:
    """Compared byte for byte on MySQL (its default collation ignores case)."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "gray_release_audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gray_release_audit_head")),
    )
    with op.batch_alter_table("gray_release_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_name", key(128), nullable=True))
        batch_op.add_column(sa.Column("environment", key(128), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("row_hash", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_gray_release_log_actor_id"), ["actor", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_gray_release_log_app_name_environment_id"),
            ["app_name", "environment", "id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_gray_release_log_action_id"), ["action", "id"], unique=False
        )
        batch_op.create_unique_constraint(batch_op.f("uq_gray_release_log_seq"), ["seq"])
    _fill_app_and_environment()
    head = sa.table(
        "gray_release_audit_head",
        sa.column("id", sa.Integer()),
        sa.column("seq", sa.BigInteger()),
        sa.column("row_hash", sa.String()),
    )
    # Rows already there are linked by the store when it first opens the database.
    op.get_bind().execute(sa.insert(head).values(id=1, seq=0, row_hash="0" * 64))


def _fill_app_and_environment() -> None:
    log = sa.table(
        "gray_release_log",
        sa.column("id", sa.BigInteger()),
        sa.column("before", sa.JSON()),
        sa.column("after", sa.JSON()),
        sa.column("plan_id", sa.String()),
        sa.column("app_name", sa.String()),
        sa.column("environment", sa.String()),
    )
    plan = sa.table(
        "gray_release_plan",
        sa.column("id", sa.String()),
        sa.column("app_name", sa.String()),
        sa.column("environment", sa.String()),
    )
    conn = op.get_bind()
    plans = {row.id: (row.app_name, row.environment) for row in conn.execute(sa.select(plan))}
    last = 0
    while True:
        rows = conn.execute(
            sa.select(log.c.id, log.c.before, log.c.after, log.c.plan_id)
            .where(log.c.id > last)
            .order_by(log.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            snapshot = _json(row.after) or _json(row.before) or {}
            app, environment = plans.get(
                row.plan_id, (snapshot.get("appName"), snapshot.get("environment"))
            )
            conn.execute(
                sa.update(log)
                .where(log.c.id == row.id)
                .values(app_name=app, environment=environment)
            )
        last = rows[-1].id


def _json(value: object) -> dict[str, object] | None:
    if isinstance(value, str):  # some drivers hand JSON back as text
        value = json.loads(value)
    return value if isinstance(value, dict) else None


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("gray_release_log", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_gray_release_log_seq"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_gray_release_log_action_id"))
        batch_op.drop_index(batch_op.f("ix_gray_release_log_app_name_environment_id"))
        batch_op.drop_index(batch_op.f("ix_gray_release_log_actor_id"))
        batch_op.drop_column("row_hash")
        batch_op.drop_column("seq")
        batch_op.drop_column("environment")
        batch_op.drop_column("app_name")
    op.drop_table("gray_release_audit_head")
