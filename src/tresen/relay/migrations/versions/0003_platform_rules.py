"""Platform rules: blocks, quality, service windows, reach and tiers, consent, templates,
pricing facts, rate cards and the billing ledger.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocks",
        sa.Column("blocker_account", sa.String(length=32), nullable=False),
        sa.Column("blocked_account", sa.String(length=32), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("blocker_account", "blocked_account", name=op.f("pk_blocks")),
    )
    op.create_index("ix_blocks_blocked", "blocks", ["blocked_account"], unique=False)
    op.create_table(
        "business_limits",
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("tier", sa.SmallInteger(), nullable=False),
        sa.Column("evaluated_ms", sa.BigInteger(), nullable=False),
        sa.Column("throughput_mps", sa.Integer(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("business_account", name=op.f("pk_business_limits")),
    )
    op.create_table(
        "consent_log",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("customer_account", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("statement", sa.LargeBinary(), nullable=True),
        sa.Column("signature", sa.String(length=128), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("evidence", sa.String(length=1024), nullable=True),
        sa.Column("evidence_ms", sa.BigInteger(), nullable=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_consent_log")),
    )
    op.create_index(
        "ix_consent_log_pair", "consent_log", ["business_account", "customer_account"], unique=False
    )
    op.create_table(
        "consents",
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("customer_account", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("statement", sa.LargeBinary(), nullable=True),
        sa.Column("signature", sa.String(length=128), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("evidence", sa.String(length=1024), nullable=True),
        sa.Column("evidence_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "business_account", "customer_account", "scope", name=op.f("pk_consents")
        ),
    )
    op.create_index("ix_consents_customer", "consents", ["customer_account"], unique=False)
    op.create_table(
        "delivery_counts",
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "business_account", "template_id", "day", name=op.f("pk_delivery_counts")
        ),
    )
    op.create_table(
        "ledger",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("recipient_account", sa.String(length=32), nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("price_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("charged_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ledger")),
        sa.UniqueConstraint("message_id", name=op.f("uq_ledger_message_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_ledger_business_charged", "ledger", ["business_account", "charged_ms"], unique=False
    )
    op.create_table(
        "message_pricing",
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("recipient_account", sa.String(length=32), nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("billable", sa.SmallInteger(), nullable=False),
        sa.Column("pricing_type", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("price_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("server_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_message_pricing")),
    )
    op.create_index("ix_message_pricing_server_ms", "message_pricing", ["server_ms"], unique=False)
    op.create_table(
        "quality_events",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("customer_account", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), server_default="", nullable=False),
        sa.Column("detail", sa.String(length=512), server_default="", nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_quality_events")),
    )
    op.create_index(
        "ix_quality_events_business_at",
        "quality_events",
        ["business_account", "at_ms"],
        unique=False,
    )
    op.create_index(
        "ix_quality_events_template_at", "quality_events", ["template_id", "at_ms"], unique=False
    )
    op.create_table(
        "rate_cards",
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("price_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "business_account", "category", "country", name=op.f("pk_rate_cards")
        ),
    )
    op.create_table(
        "reach",
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("customer_account", sa.String(length=32), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("business_account", "customer_account", name=op.f("pk_reach")),
    )
    op.create_index("ix_reach_business_at", "reach", ["business_account", "at_ms"], unique=False)
    op.create_table(
        "service_windows",
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("customer_account", sa.String(length=32), nullable=False),
        sa.Column("last_customer_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "business_account", "customer_account", name=op.f("pk_service_windows")
        ),
    )
    op.create_table(
        "templates",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("business_account", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column(
            "parameter_format", sa.String(length=16), server_default="POSITIONAL", nullable=False
        ),
        sa.Column("components", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("rejected_reason", sa.String(length=512), nullable=True),
        sa.Column("quality", sa.String(length=8), server_default="UNKNOWN", nullable=False),
        sa.Column("pauses", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("paused_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("signed_body", sa.LargeBinary(), nullable=True),
        sa.Column("signature", sa.String(length=128), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint(
            "business_account", "name", "language", name="uq_templates_name_language"
        ),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("templates")
    op.drop_table("service_windows")
    op.drop_index("ix_reach_business_at", table_name="reach")
    op.drop_table("reach")
    op.drop_table("rate_cards")
    op.drop_index("ix_quality_events_template_at", table_name="quality_events")
    op.drop_index("ix_quality_events_business_at", table_name="quality_events")
    op.drop_table("quality_events")
    op.drop_index("ix_message_pricing_server_ms", table_name="message_pricing")
    op.drop_table("message_pricing")
    op.drop_index("ix_ledger_business_charged", table_name="ledger")
    op.drop_table("ledger")
    op.drop_table("delivery_counts")
    op.drop_index("ix_consents_customer", table_name="consents")
    op.drop_table("consents")
    op.drop_index("ix_consent_log_pair", table_name="consent_log")
    op.drop_table("consent_log")
    op.drop_table("business_limits")
    op.drop_index("ix_blocks_blocked", table_name="blocks")
    op.drop_table("blocks")
