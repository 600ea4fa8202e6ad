"""Media: the business's uploaded and received files, and the relay blobs made from them.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("mime_type", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
    )
    op.create_index(op.f("ix_media_expires_ms"), "media", ["expires_ms"])
    op.create_table(
        "media_blobs",
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.Column("media_id", sa.String(length=20), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("blob_id", name=op.f("pk_media_blobs")),
    )
    op.create_index(op.f("ix_media_blobs_media_id"), "media_blobs", ["media_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_media_blobs_media_id"), table_name="media_blobs")
    op.drop_table("media_blobs")
    op.drop_index(op.f("ix_media_expires_ms"), table_name="media")
    op.drop_table("media")
