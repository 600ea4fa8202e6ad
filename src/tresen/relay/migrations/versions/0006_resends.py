"""Resends: a sender may encrypt a message again for one device of its recipient that could
not decrypt it. The message record counts them (``resends``, capped by
``limits.max_resends_per_message``) and keeps the template the message was accepted as
(``template_id``), which every resent copy carries again.

Messages stored before this revision get their template from their pricing facts or, failing
that, from a mailbox entry of theirs still waiting; one without either is resent without one.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TEMPLATE = 1  # MessageClass.TEMPLATE
_MESSAGE = 0  # EntryKind.MESSAGE


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("template_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("resends", sa.Integer(), server_default="0", nullable=False))
    bind = op.get_bind()
    # One pass over the mailbox (it has no index by message), then updates by primary key.
    rows = bind.execute(
        sa.text(
            "SELECT message_id, MAX(template_id) FROM mailbox "
            "WHERE kind = :kind AND template_id IS NOT NULL GROUP BY message_id"
        ),
        {"kind": _MESSAGE},
    ).all()
    if rows:
        bind.execute(
            sa.text(
                "UPDATE messages SET template_id = :template_id "
                "WHERE message_id = :message_id AND klass = :klass"
            ),
            [{"message_id": m, "template_id": t, "klass": _TEMPLATE} for m, t in rows],
        )
    bind.execute(
        sa.text(
            "UPDATE messages SET template_id = (SELECT p.template_id FROM message_pricing p "
            "WHERE p.message_id = messages.message_id) "
            "WHERE klass = :klass AND template_id IS NULL"
        ),
        {"klass": _TEMPLATE},
    )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("resends")
        batch.drop_column("template_id")
