"""Certificates issued before the key log existed go into its next epoch, so that clients
can require every certificate they show a tick for to be logged.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT serial, account_id, body FROM certificates WHERE revoked_ms IS NULL "
            "AND serial NOT IN (SELECT serial FROM kt_certificates) "
            "AND serial NOT IN (SELECT serial FROM kt_pending_certificates)"
        )
    ).all()
    pending = sa.table(
        "kt_pending_certificates",
        sa.column("serial", sa.BigInteger()),
        sa.column("account_id", sa.String(32)),
        sa.column("digest", sa.LargeBinary(32)),
        sa.column("queued_ms", sa.BigInteger()),
    )
    if rows:
        op.bulk_insert(
            pending,
            [
                {
                    "serial": r.serial,
                    "account_id": r.account_id,
                    "digest": hashlib.sha256(bytes(r.body)).digest(),
                    "queued_ms": 0,
                }
                for r in rows
            ],
        )


def downgrade() -> None:
    pass  # the log keeps what it logged; nothing to undo
