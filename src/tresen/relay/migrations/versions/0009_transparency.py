"""Key transparency: the append-only log of device sets and certificates, the map of each
account's latest device set, the signed epochs, and the changes waiting for the next epoch.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kt_log_nodes",
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_kt_log_nodes")),
    )
    op.create_table(
        "kt_map_nodes",
        sa.Column("pos", sa.LargeBinary(length=34), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("leaf_key", sa.LargeBinary(length=32), nullable=True),
        sa.Column("leaf_value", sa.LargeBinary(length=40), nullable=True),
        sa.PrimaryKeyConstraint("pos", name=op.f("pk_kt_map_nodes")),
    )
    op.create_table(
        "kt_accounts",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("leaf_idx", sa.BigInteger(), nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_kt_accounts")),
    )
    op.create_table(
        "kt_certificates",
        sa.Column("serial", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("leaf_idx", sa.BigInteger(), nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_kt_certificates")),
    )
    op.create_table(
        "kt_epochs",
        sa.Column("epoch", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("published_ms", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("epoch", name=op.f("pk_kt_epochs")),
    )
    op.create_table(
        "kt_pending_accounts",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("queued_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_kt_pending_accounts")),
    )
    op.create_table(
        "kt_pending_certificates",
        sa.Column("serial", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("queued_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_kt_pending_certificates")),
    )
    # Every account that has device keys already goes into the first epoch; certificates
    # issued before the upgrade are not logged (the next renewal or re-issue logs them).
    op.execute(
        "INSERT INTO kt_pending_accounts (account_id, queued_ms) "
        "SELECT DISTINCT account_id, 0 FROM devices WHERE identity_curve25519 IS NOT NULL"
    )


def downgrade() -> None:
    for table in (
        "kt_pending_certificates",
        "kt_pending_accounts",
        "kt_epochs",
        "kt_certificates",
        "kt_accounts",
        "kt_map_nodes",
        "kt_log_nodes",
    ):
        op.drop_table(table)
