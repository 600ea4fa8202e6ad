"""Delivery receipts: the signed evidence a business checks its bill against.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_receipts",
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("customer_account", sa.String(32), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("device_ed25519", sa.String(64), nullable=False),
        sa.Column("template_id", sa.String(20), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_delivery_receipts")),
    )
    op.create_index(
        "ix_delivery_receipts_received", "delivery_receipts", ["received_ms"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_receipts_received", table_name="delivery_receipts")
    op.drop_table("delivery_receipts")
