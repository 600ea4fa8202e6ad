"""Businesses: profiles, verification requests, operator keys and tokens, certificates, audit.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="customer")
        )
    op.create_table(
        "business_profiles",
        sa.Column("account_id", sa.String(32)),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("name_skeleton", sa.String(200), nullable=False),
        sa.Column("about", sa.String(139), nullable=False, server_default=""),
        sa.Column("description", sa.String(512), nullable=False, server_default=""),
        sa.Column("address", sa.String(256), nullable=False, server_default=""),
        sa.Column("email", sa.String(128), nullable=False, server_default=""),
        sa.Column("websites", sa.Text, nullable=False, server_default="[]"),
        sa.Column("category", sa.String(32), nullable=False, server_default="OTHER"),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("hours", sa.Text, nullable=False, server_default="{}"),
        sa.Column("closed_dates", sa.Text, nullable=False, server_default="[]"),
        sa.Column("picture", sa.LargeBinary, nullable=True),
        sa.Column("picture_type", sa.String(32), nullable=True),
        sa.Column("verification", sa.String(16), nullable=False, server_default="unverified"),
        sa.Column("suspended_ms", sa.BigInteger, nullable=True),
        sa.Column("suspend_reason", sa.String(512), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_business_profiles"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_business_profiles_account_id_accounts"
        ),
    )
    op.create_index("ix_business_profiles_name_skeleton", "business_profiles", ["name_skeleton"])
    op.create_table(
        "verification_requests",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("note", sa.String(512), nullable=False, server_default=""),
        sa.Column("reason", sa.String(512), nullable=True),
        sa.Column("requested_ms", sa.BigInteger, nullable=False),
        sa.Column("decided_ms", sa.BigInteger, nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_verification_requests"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_verification_requests_account_id_accounts"
        ),
    )
    op.create_index("ix_verification_requests_account_id", "verification_requests", ["account_id"])
    op.create_table(
        "operator_keys",
        sa.Column("key_id", sa.String(32)),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("private_sealed", sa.LargeBinary, nullable=False),
        sa.Column("endorsement", sa.String(128), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("signs_from_ms", sa.BigInteger, nullable=False),
        sa.Column("retires_ms", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_operator_keys"),
    )
    op.create_table(
        "certificates",
        sa.Column("serial", BigId, autoincrement=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("issued_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_ms", sa.BigInteger, nullable=True),
        sa.Column("revoke_reason", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("serial", name="pk_certificates"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_certificates_account_id_accounts"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_certificates_account_id", "certificates", ["account_id"])
    op.create_table(
        "operator_tokens",
        sa.Column("pk", BigId, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_ms", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_operator_tokens"),
        sa.UniqueConstraint("name", name="uq_operator_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_operator_tokens_token_hash"),
    )
    op.create_table(
        "admin_audit",
        sa.Column("pk", BigId, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=True),
        sa.Column("details", sa.Text, nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("pk", name="pk_admin_audit"),
    )
    op.create_index("ix_admin_audit_account_id", "admin_audit", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_admin_audit_account_id", table_name="admin_audit")
    op.drop_table("admin_audit")
    op.drop_table("operator_tokens")
    op.drop_index("ix_certificates_account_id", table_name="certificates")
    op.drop_table("certificates")
    op.drop_table("operator_keys")
    op.drop_index("ix_verification_requests_account_id", table_name="verification_requests")
    op.drop_table("verification_requests")
    op.drop_index("ix_business_profiles_name_skeleton", table_name="business_profiles")
    op.drop_table("business_profiles")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("kind")
