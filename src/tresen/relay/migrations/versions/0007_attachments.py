"""Encrypted attachments: the blob store's table (``attachments``), one row per uploaded or
uploading blob of opaque ciphertext. The blobs themselves live in the data folder.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(length=43), nullable=False),
        sa.Column("device_pk", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("completed_ms", sa.BigInteger(), nullable=True),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
    )
    op.create_index("ix_attachments_device", "attachments", ["device_pk", "expires_ms"])
    op.create_index("ix_attachments_expires", "attachments", ["expires_ms"])


def downgrade() -> None:
    op.drop_index("ix_attachments_expires", table_name="attachments")
    op.drop_index("ix_attachments_device", table_name="attachments")
    op.drop_table("attachments")
