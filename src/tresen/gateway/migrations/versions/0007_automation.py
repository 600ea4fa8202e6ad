"""Automation: its settings, the FAQ bot's intents and HTTP actions, what it remembers of
each customer, and its log for the reports.

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
        "automation_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_settings")),
    )
    op.create_table(
        "bot_intents",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Integer(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_bot_intents")),
    )
    op.create_table(
        "bot_actions",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("headers", sa.LargeBinary(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_bot_actions")),
    )
    op.create_table(
        "bot_state",
        sa.Column("contact", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=True),
        sa.Column("misunderstood", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Text(), nullable=True),
        sa.Column("took_ms", sa.BigInteger(), nullable=True),
        sa.Column("greeted_ms", sa.BigInteger(), nullable=True),
        sa.Column("away_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("contact", name=op.f("pk_bot_state")),
    )
    op.create_table(
        "bot_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contact", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("intent", sa.String(length=40), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("dismissed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_log")),
    )
    op.create_index("ix_bot_log_kind_at", "bot_log", ["kind", "at_ms"])
    op.create_index("ix_bot_log_contact_at", "bot_log", ["contact", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_bot_log_contact_at", table_name="bot_log")
    op.drop_index("ix_bot_log_kind_at", table_name="bot_log")
    op.drop_table("bot_log")
    op.drop_table("bot_state")
    op.drop_table("bot_actions")
    op.drop_table("bot_intents")
    op.drop_table("automation_settings")
