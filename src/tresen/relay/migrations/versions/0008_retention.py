"""Retention (docs/privacy.md): what the relay keeps is cut to what its rules need.

- ``throttle_keys``: the random key of each throttle window; ``rate_events.bucket`` becomes an
  HMAC under it. Events stored before hold numbers and addresses in plaintext: they are deleted
  (the throttle starts afresh once).
- ``ledger_months``: a month's totals once its line items are given up.
- ``delivery_counts`` counts every delivered message of a business (``template_id`` 0 for
  those without a template), so that quality no longer reads ``messages``: the deliveries of
  messages still on record are counted in.
- ``devices.created_ms``, ``devices.last_seen_ms`` and ``accounts.created_ms`` hold the UTC
  day (its first millisecond).
- Indexes for the retention task: messages and charges by age, mailbox entries by message.

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

DAY_MS = 86_400_000


def upgrade() -> None:
    op.create_table(
        "throttle_keys",
        sa.Column("slot", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_throttle_keys")),
    )
    op.create_table(
        "ledger_months",
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("month_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "business_account",
            "month_ms",
            "category",
            "country",
            "currency",
            name=op.f("pk_ledger_months"),
        ),
    )
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM rate_events"))
    # Template deliveries are counted already; the others of businesses are added as 0.
    bind.execute(
        sa.text(
            "INSERT INTO delivery_counts (business_account, template_id, day, delivered) "
            "SELECT m.sender_account, 0, m.delivered_ms / :day, COUNT(*) FROM messages m "
            "JOIN accounts a ON a.id = m.sender_account AND a.kind = 'business' "
            "WHERE m.delivered_ms IS NOT NULL AND m.template_id IS NULL "
            "AND m.recipient_account <> m.sender_account "
            "GROUP BY m.sender_account, m.delivered_ms / :day"
        ),
        {"day": DAY_MS},
    )
    for table, columns in (
        ("devices", ("created_ms", "last_seen_ms")),
        ("accounts", ("created_ms",)),
    ):
        sets = ", ".join(f"{c} = {c} - {c} % {DAY_MS}" for c in columns)
        bind.execute(sa.text(f"UPDATE {table} SET {sets}"))  # noqa: S608 (constants)
    op.drop_index("ix_messages_sender_delivered", table_name="messages")
    op.create_index("ix_messages_server", "messages", ["server_ms"])
    op.create_index("ix_mailbox_message", "mailbox", ["message_id"])
    op.create_index("ix_ledger_charged", "ledger", ["charged_ms"])


def downgrade() -> None:
    op.drop_index("ix_ledger_charged", table_name="ledger")
    op.drop_index("ix_mailbox_message", table_name="mailbox")
    op.drop_index("ix_messages_server", table_name="messages")
    op.create_index("ix_messages_sender_delivered", "messages", ["sender_account", "delivered_ms"])
    op.get_bind().execute(sa.text("DELETE FROM delivery_counts WHERE template_id = 0"))
    op.drop_table("ledger_months")
    op.drop_table("throttle_keys")
