"""Mailbox entries name the template a template-class message was accepted as; sent messages
are indexed by sender and delivery time (a business's deliveries, for its quality rating).

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
    with op.batch_alter_table("mailbox") as batch:
        batch.add_column(sa.Column("template_id", sa.BigInteger(), nullable=True))
    op.create_index("ix_messages_sender_delivered", "messages", ["sender_account", "delivered_ms"])


def downgrade() -> None:
    op.drop_index("ix_messages_sender_delivered", table_name="messages")
    with op.batch_alter_table("mailbox") as batch:
        batch.drop_column("template_id")
