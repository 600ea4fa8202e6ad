"""Automatic assignment: agents' availability, limits and turns; the business's settings;
activity by kind and time (reports).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("away_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("open_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("assigned_turn", sa.BigInteger(), nullable=True))
    op.create_table(
        "assignment_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("enabled", sa.Integer(), nullable=False),
        sa.Column("default_limit", sa.Integer(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_settings")),
    )
    op.create_index("ix_activity_kind_at", "activity", ["kind", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_activity_kind_at", table_name="activity")
    op.drop_table("assignment_settings")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("assigned_turn")
        batch.drop_column("open_limit")
        batch.drop_column("away_ms")
