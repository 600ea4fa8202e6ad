"""Registration and reports that cannot be turned against others: pending codes that any
request re-sends instead of replacing (the previous one stays valid), per-account lookup
budgets that survive restarts, quality events that say whether they count, and the last
business message each customer received.

Pending codes are short-lived, so the table is recreated rather than converted: a code
pending during the upgrade must be requested again.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("verification_codes")
    op.create_table(
        "verification_codes",
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("previous_code", sa.String(length=12), nullable=True),
        sa.Column("previous_expires_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_verification_codes")),
    )
    op.create_table(
        "lookup_budgets",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("tat_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_lookup_budgets")),
    )
    op.create_table(
        "recipients",
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("customer_account", sa.String(length=32), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("business_account", "customer_account", name=op.f("pk_recipients")),
    )
    with op.batch_alter_table("quality_events") as batch:
        # Events recorded before the rule keep counting, as they did.
        batch.add_column(
            sa.Column("counted", sa.SmallInteger(), server_default="1", nullable=False)
        )
    op.create_index(
        "ix_quality_events_business_customer",
        "quality_events",
        ["business_account", "customer_account", "at_ms"],
    )


def downgrade() -> None:
    op.drop_index("ix_quality_events_business_customer", table_name="quality_events")
    with op.batch_alter_table("quality_events") as batch:
        batch.drop_column("counted")
    op.drop_table("recipients")
    op.drop_table("lookup_budgets")
    op.drop_table("verification_codes")
    op.create_table(
        "verification_codes",
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_verification_codes")),
    )
