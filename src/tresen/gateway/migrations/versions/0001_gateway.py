"""The gateway's tables: meta, API tokens, contacts, messages and their statuses, templates
seen, webhook subscriptions and the webhook outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_used_ms", sa.BigInteger(), nullable=True),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "contacts",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("wa_id", sa.String(length=20), nullable=True),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("profile_name", sa.String(length=128), nullable=True),
        sa.Column("last_inbound_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("user_id", name=op.f("uq_contacts_user_id")),
    )
    op.create_index(op.f("ix_contacts_wa_id"), "contacts", ["wa_id"], unique=False)
    op.create_table(
        "early_statuses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("relay_message_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("pricing", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_early_statuses")),
    )
    op.create_index(
        op.f("ix_early_statuses_relay_message_id"),
        "early_statuses",
        ["relay_message_id"],
        unique=False,
    )
    op.create_table(
        "message_statuses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wamid", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_statuses")),
        sa.UniqueConstraint("wamid", "status", name=op.f("uq_message_statuses_wamid")),
    )
    op.create_index(op.f("ix_message_statuses_wamid"), "message_statuses", ["wamid"], unique=False)
    op.create_table(
        "messages",
        sa.Column("wamid", sa.String(length=80), nullable=False),
        sa.Column("relay_message_id", sa.String(length=32), nullable=True),
        sa.Column("contact", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("context_wamid", sa.String(length=80), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pricing", sa.Text(), nullable=True),
        sa.Column("callback_data", sa.String(length=512), nullable=True),
        sa.Column("template_name", sa.String(length=512), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("wamid", name=op.f("pk_messages")),
        sa.UniqueConstraint("relay_message_id", name=op.f("uq_messages_relay_message_id")),
    )
    op.create_index(
        "ix_messages_contact_created", "messages", ["contact", "created_ms"], unique=False
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    op.create_table(
        "template_states",
        sa.Column("template_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("language", sa.String(length=15), nullable=False),
        sa.Column("category", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("template_id", name=op.f("pk_template_states")),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("conversation", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_webhook_events_event_id")),
    )
    op.create_index(
        "ix_webhook_events_due", "webhook_events", ["state", "next_attempt_ms"], unique=False
    )
    op.create_index(
        "ix_webhook_events_pending",
        "webhook_events",
        ["state", "subscription_id", "conversation", "id"],
        unique=False,
    )
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("verify_token", sa.String(length=256), nullable=False),
        sa.Column("app_secret", sa.LargeBinary(), nullable=False),
        sa.Column("fields", sa.String(length=512), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("removed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
        sa.UniqueConstraint("url", name=op.f("uq_webhook_subscriptions_url")),
    )


def downgrade() -> None:
    op.drop_table("webhook_subscriptions")
    op.drop_index("ix_webhook_events_pending", table_name="webhook_events")
    op.drop_index("ix_webhook_events_due", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.drop_table("template_states")
    op.drop_table("meta")
    op.drop_index("ix_messages_contact_created", table_name="messages")
    op.drop_table("messages")
    op.drop_index(op.f("ix_message_statuses_wamid"), table_name="message_statuses")
    op.drop_table("message_statuses")
    op.drop_index(op.f("ix_early_statuses_relay_message_id"), table_name="early_statuses")
    op.drop_table("early_statuses")
    op.drop_index(op.f("ix_contacts_wa_id"), table_name="contacts")
    op.drop_table("contacts")
    op.drop_table("api_tokens")
