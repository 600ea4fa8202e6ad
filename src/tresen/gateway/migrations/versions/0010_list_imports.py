"""The CSV imports of subscriber lists, with the report of each row.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriber_imports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("rows", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_imports")),
    )
    op.create_index("ix_subscriber_imports_list", "subscriber_imports", ["list_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_subscriber_imports_list", table_name="subscriber_imports")
    op.drop_table("subscriber_imports")
