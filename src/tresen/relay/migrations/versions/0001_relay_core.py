"""Relay core: accounts, devices, codes, rate events, key directory, messages, mailbox.

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

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("last_device_id", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("phone", name="uq_accounts_phone"),
    )
    op.create_table(
        "devices",
        sa.Column("pk", BigId, autoincrement=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("registration_id", sa.Integer, nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False, server_default=""),
        sa.Column("identity_curve25519", sa.String(64), nullable=True),
        sa.Column("identity_ed25519", sa.String(64), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_devices"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_devices_account_id_accounts"
        ),
        sa.UniqueConstraint("token_hash", name="uq_devices_token_hash"),
        sa.UniqueConstraint("account_id", "device_id", name="uq_devices_account_device"),
    )
    op.create_table(
        "verification_codes",
        sa.Column("phone", sa.String(20)),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("phone", name="pk_verification_codes"),
    )
    op.create_table(
        "rate_events",
        sa.Column("pk", BigId, autoincrement=True),
        sa.Column("bucket", sa.String(96), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_rate_events"),
    )
    op.create_index("ix_rate_events_bucket_at", "rate_events", ["bucket", "at_ms"])
    op.create_table(
        "one_time_keys",
        sa.Column("pk", BigId, autoincrement=True),
        sa.Column("device_pk", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_one_time_keys"),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.pk"],
            name="fk_one_time_keys_device_pk_devices",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("device_pk", "key_id", name="uq_one_time_keys_device_key"),
    )
    op.create_table(
        "fallback_keys",
        sa.Column("device_pk", sa.BigInteger),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("uploaded_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_pk", name="pk_fallback_keys"),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.pk"],
            name="fk_fallback_keys_device_pk_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "messages",
        sa.Column("message_id", sa.String(32)),
        sa.Column("sender_account", sa.String(32), nullable=False),
        sa.Column("sender_device_pk", sa.BigInteger, nullable=False),
        sa.Column("client_msg_id", sa.String(64), nullable=False),
        sa.Column("recipient_account", sa.String(32), nullable=False),
        sa.Column("klass", sa.SmallInteger, nullable=False),
        sa.Column("server_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("delivered_ms", sa.BigInteger, nullable=True),
        sa.Column("read_ms", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("message_id", name="pk_messages"),
        sa.UniqueConstraint(
            "sender_device_pk", "client_msg_id", name="uq_messages_sender_client_msg"
        ),
    )
    op.create_index("ix_messages_expires", "messages", ["expires_ms"])
    op.create_table(
        "mailbox",
        sa.Column("seq", BigId, autoincrement=True),
        sa.Column("device_pk", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("peer_account", sa.String(32), nullable=False),
        sa.Column("peer_device", sa.Integer, nullable=False),
        sa.Column("klass", sa.SmallInteger, nullable=False),
        sa.Column("olm_type", sa.SmallInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("server_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_mailbox"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mailbox_device_seq", "mailbox", ["device_pk", "seq"])
    op.create_index("ix_mailbox_expires", "mailbox", ["expires_ms"])


def downgrade() -> None:
    for index, table in (
        ("ix_mailbox_expires", "mailbox"),
        ("ix_mailbox_device_seq", "mailbox"),
        ("ix_messages_expires", "messages"),
        ("ix_rate_events_bucket_at", "rate_events"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "mailbox",
        "messages",
        "fallback_keys",
        "one_time_keys",
        "rate_events",
        "verification_codes",
        "devices",
        "accounts",
    ):
        op.drop_table(table)
