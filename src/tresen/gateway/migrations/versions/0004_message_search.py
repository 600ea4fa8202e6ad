"""Search over every message (SQLite FTS5, PostgreSQL full text), and the indexes of a fast
conversation list.

The searchable text of a message is taken from its JSON ``content`` in SQL, so that the
database keeps the index by itself and no write path changes: on SQLite an FTS5 table kept by
triggers on ``messages``, on PostgreSQL a generated ``search`` column with a GIN index. Both
use a language-neutral tokenisation (a business writes German and English alike): words are
lower-cased, not stemmed, umlauts kept.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def searchable_sqlite(row: str) -> str:
    """The words of a message, from ``row`` (``new`` or ``old`` in a trigger, or a table)."""
    content = f"{row}.content"
    return f"""CASE WHEN json_valid({content}) THEN CASE {row}.type
        WHEN 'text' THEN json_extract({content}, '$.body')
        WHEN 'button' THEN json_extract({content}, '$.text')
        WHEN 'interactive' THEN
            coalesce(json_extract({content}, '$.body.text'), '') || ' ' ||
            coalesce(json_extract({content}, '$.button_reply.title'), '') || ' ' ||
            coalesce(json_extract({content}, '$.list_reply.title'), '')
        WHEN 'template' THEN coalesce({row}.template_name, json_extract({content}, '$.name'))
        ELSE json_extract({content}, '$.caption')
    END END"""


SEARCHABLE_POSTGRES = """CASE type
    WHEN 'text' THEN coalesce(content::jsonb ->> 'body', '')
    WHEN 'button' THEN coalesce(content::jsonb ->> 'text', '')
    WHEN 'interactive' THEN
        coalesce(content::jsonb #>> '{body,text}', '') || ' ' ||
        coalesce(content::jsonb #>> '{button_reply,title}', '') || ' ' ||
        coalesce(content::jsonb #>> '{list_reply,title}', '')
    WHEN 'template' THEN coalesce(template_name, content::jsonb ->> 'name', '')
    ELSE coalesce(content::jsonb ->> 'caption', '')
END"""


def upgrade() -> None:
    # The conversation list counts each conversation's unread (inbound) messages.
    op.create_index(
        "ix_messages_contact_direction_created",
        "messages",
        ["contact", "direction", "created_ms"],
    )
    if op.get_context().dialect.name == "sqlite":
        _sqlite_upgrade()
    else:
        _postgres_upgrade()


def _sqlite_upgrade() -> None:
    # Every statement here is built from this module's constants only (S608).
    # A table of its own (not external content): deleting a row needs only its rowid, which
    # is the message's. Diacritics are kept so that both databases find the same.
    op.execute(
        "CREATE VIRTUAL TABLE message_search USING fts5("
        "text, tokenize = 'unicode61 remove_diacritics 0')"
    )
    op.execute(
        "CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN "  # noqa: S608
        "INSERT INTO message_search (rowid, text) "
        f"VALUES (new.rowid, coalesce({searchable_sqlite('new')}, '')); END"
    )
    op.execute(
        "CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN "
        "DELETE FROM message_search WHERE rowid = old.rowid; END"
    )
    # Statuses change often and never touch the text: only these columns re-index a message.
    op.execute(
        "CREATE TRIGGER messages_search_update "  # noqa: S608
        "AFTER UPDATE OF type, content, template_name ON messages BEGIN "
        "DELETE FROM message_search WHERE rowid = old.rowid; "
        "INSERT INTO message_search (rowid, text) "
        f"VALUES (new.rowid, coalesce({searchable_sqlite('new')}, '')); END"
    )
    op.execute(
        "INSERT INTO message_search (rowid, text) "  # noqa: S608
        f"SELECT rowid, coalesce({searchable_sqlite('messages')}, '') FROM messages"
    )


def _postgres_upgrade() -> None:
    # A generated column is computed for the existing rows too (the backfill).
    op.execute(
        "ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS "
        f"(to_tsvector('simple'::regconfig, {SEARCHABLE_POSTGRES})) STORED"
    )
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search)")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS messages_search_{trigger}")
        op.execute("DROP TABLE IF EXISTS message_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_search")
        op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search")
    op.drop_index("ix_messages_contact_direction_created", table_name="messages")
