"""PostgreSQL: ``messages`` pages are filled to half, so that marking a message delivered or
read (an update of a column no index holds) writes its new version on the same page: a
heap-only update, with no new entry in any of the table's four indexes. Full pages made three
of four delivery updates write all four indexes again (docs/architecture.md, "Room for the
delivery update"). New pages only: pages written before keep their rows until they empty.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE messages SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE messages RESET (fillfactor)")
