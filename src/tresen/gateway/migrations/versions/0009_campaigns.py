"""Subscriber lists and campaigns.

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
        "subscriber_lists",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("keyword", sa.String(length=30), nullable=True),
        sa.Column("purpose", sa.String(length=12), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("confirmation", sa.String(length=1024), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_subscriber_lists_name")),
        sa.UniqueConstraint("keyword", name=op.f("uq_subscriber_lists_keyword")),
    )
    op.create_table(
        "subscribers",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("evidence", sa.String(length=1024), nullable=True),
        sa.Column("reason", sa.String(length=256), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("list_id", "account_id", name=op.f("pk_subscribers")),
    )
    op.create_index("ix_subscribers_list_state", "subscribers", ["list_id", "state"])
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("template_name", sa.String(length=512), nullable=False),
        sa.Column("language", sa.String(length=15), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=True),
        sa.Column("start_ms", sa.BigInteger(), nullable=True),
        sa.Column("resume_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index("ix_campaigns_state", "campaigns", ["state"])
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("client_msg_id", sa.String(length=64), nullable=False),
        sa.Column("wamid", sa.String(length=64), nullable=True),
        sa.Column("due_ms", sa.BigInteger(), nullable=True),
        sa.Column("sent_ms", sa.BigInteger(), nullable=True),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.Column("read_ms", sa.BigInteger(), nullable=True),
        sa.Column("replied_ms", sa.BigInteger(), nullable=True),
        sa.Column("pricing", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("campaign_id", "account_id", name=op.f("pk_campaign_recipients")),
    )
    op.create_index("ix_campaign_recipients_state", "campaign_recipients", ["campaign_id", "state"])
    op.create_index("ix_campaign_recipients_wamid", "campaign_recipients", ["wamid"])


def downgrade() -> None:
    op.drop_index("ix_campaign_recipients_wamid", table_name="campaign_recipients")
    op.drop_index("ix_campaign_recipients_state", table_name="campaign_recipients")
    op.drop_table("campaign_recipients")
    op.drop_index("ix_campaigns_state", table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_index("ix_subscribers_list_state", table_name="subscribers")
    op.drop_table("subscribers")
    op.drop_table("subscriber_lists")
