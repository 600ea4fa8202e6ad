"""Search over every message (SQLite FTS5, PostgreSQL full text), and what makes the
conversation list fast: each contact's latest message time, kept by the database.

The searchable text of a message is taken from its JSON ``content`` in SQL, so that the
database keeps the index by itself and no write path changes: on SQLite an FTS5 table kept by
triggers on ``messages``, on PostgreSQL a generated ``search`` column with a GIN index. Both
use a language-neutral tokenisation (a business writes German and English alike): words are
lower-cased, not stemmed, umlauts kept.

``contacts.last_message_ms`` (indexed) is the time of the contact's latest message, kept by
triggers too: the list's first page is then the first rows of an index instead of a search
for the latest message of every contact. The gateway may store a message before its contact
(one transaction), so a new contact also takes the time of the messages already stored.

Revision ID: 0006
Revises: 0005
"""

# ruff: noqa: S608 - every statement here is built from this module's own constants.
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
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


LATEST_OF = "(SELECT max(created_ms) FROM messages WHERE messages.contact = {contact})"


def upgrade() -> None:
    # The conversation list counts each conversation's unread (inbound) messages.
    op.create_index(
        "ix_messages_contact_direction_created",
        "messages",
        ["contact", "direction", "created_ms"],
    )
    # Search walks the newest messages for a common word (PostgreSQL).
    op.create_index("ix_messages_created", "messages", ["created_ms"])
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("last_message_ms", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE contacts SET last_message_ms = " + LATEST_OF.format(contact="contacts.account_id")
    )
    op.create_index("ix_contacts_last_message", "contacts", ["last_message_ms", "account_id"])
    if op.get_context().dialect.name == "sqlite":
        _sqlite_latest()
        _sqlite_upgrade()
    else:
        _postgres_latest()
        _postgres_upgrade()


def _sqlite_latest() -> None:
    op.execute(
        "CREATE TRIGGER messages_latest_insert AFTER INSERT ON messages BEGIN "
        "UPDATE contacts SET last_message_ms = new.created_ms WHERE account_id = new.contact "
        "AND (last_message_ms IS NULL OR last_message_ms < new.created_ms); END"
    )
    op.execute(
        "CREATE TRIGGER messages_latest_delete AFTER DELETE ON messages BEGIN "
        "UPDATE contacts SET last_message_ms = "
        + LATEST_OF.format(contact="old.contact")
        + " WHERE account_id = old.contact; END"
    )
    op.execute(
        "CREATE TRIGGER messages_latest_update AFTER UPDATE OF contact, created_ms ON messages "
        "BEGIN UPDATE contacts SET last_message_ms = "
        + LATEST_OF.format(contact="contacts.account_id")
        + " WHERE account_id IN (old.contact, new.contact); END"
    )
    op.execute(
        "CREATE TRIGGER contacts_latest_insert AFTER INSERT ON contacts BEGIN "
        "UPDATE contacts SET last_message_ms = "
        + LATEST_OF.format(contact="new.account_id")
        + " WHERE account_id = new.account_id; END"
    )


def _postgres_latest() -> None:
    # Statement-level triggers: a batch of messages updates each contact once.
    op.execute(
        """CREATE FUNCTION messages_latest_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE contacts SET last_message_ms = added.latest
            FROM (SELECT contact, max(created_ms) AS latest FROM new_messages GROUP BY contact)
                AS added
            WHERE contacts.account_id = added.contact
                AND (contacts.last_message_ms IS NULL OR contacts.last_message_ms < added.latest);
            RETURN NULL;
        END $$"""
    )
    op.execute(
        "CREATE TRIGGER messages_latest_insert AFTER INSERT ON messages "
        "REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT "
        "EXECUTE FUNCTION messages_latest_inserted()"
    )
    op.execute(
        f"""CREATE FUNCTION messages_latest_removed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE contacts SET last_message_ms = {LATEST_OF.format(contact="contacts.account_id")}
            WHERE contacts.account_id IN (SELECT contact FROM old_messages);
            RETURN NULL;
        END $$"""
    )
    op.execute(
        "CREATE TRIGGER messages_latest_delete AFTER DELETE ON messages "
        "REFERENCING OLD TABLE AS old_messages FOR EACH STATEMENT "
        "EXECUTE FUNCTION messages_latest_removed()"
    )
    # Rare (statuses change, times do not), so a row trigger, and only when they change.
    op.execute(
        f"""CREATE FUNCTION messages_latest_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE contacts SET last_message_ms = {LATEST_OF.format(contact="contacts.account_id")}
            WHERE contacts.account_id IN (OLD.contact, NEW.contact);
            RETURN NULL;
        END $$"""
    )
    op.execute(
        "CREATE TRIGGER messages_latest_update AFTER UPDATE OF contact, created_ms ON messages "
        "FOR EACH ROW WHEN (OLD.created_ms IS DISTINCT FROM NEW.created_ms "
        "OR OLD.contact IS DISTINCT FROM NEW.contact) "
        "EXECUTE FUNCTION messages_latest_updated()"
    )
    op.execute(
        f"""CREATE FUNCTION contacts_latest_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE contacts SET last_message_ms = {LATEST_OF.format(contact="contacts.account_id")}
            WHERE contacts.account_id IN (SELECT account_id FROM new_contacts);
            RETURN NULL;
        END $$"""
    )
    op.execute(
        "CREATE TRIGGER contacts_latest_insert AFTER INSERT ON contacts "
        "REFERENCING NEW TABLE AS new_contacts FOR EACH STATEMENT "
        "EXECUTE FUNCTION contacts_latest_inserted()"
    )


def _sqlite_upgrade() -> None:
    # A table of its own (not external content): deleting a row needs only its rowid, which
    # is the message's. Diacritics are kept so that both databases find the same.
    op.execute(
        "CREATE VIRTUAL TABLE message_search USING fts5("
        "text, tokenize = 'unicode61 remove_diacritics 0')"
    )
    op.execute(
        "CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO message_search (rowid, text) "
        f"VALUES (new.rowid, coalesce({searchable_sqlite('new')}, '')); END"
    )
    op.execute(
        "CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN "
        "DELETE FROM message_search WHERE rowid = old.rowid; END"
    )
    # Statuses change often and never touch the text: only these columns re-index a message.
    op.execute(
        "CREATE TRIGGER messages_search_update "
        "AFTER UPDATE OF type, content, template_name ON messages BEGIN "
        "DELETE FROM message_search WHERE rowid = old.rowid; "
        "INSERT INTO message_search (rowid, text) "
        f"VALUES (new.rowid, coalesce({searchable_sqlite('new')}, '')); END"
    )
    op.execute(
        "INSERT INTO message_search (rowid, text) "
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
    sqlite = op.get_context().dialect.name == "sqlite"
    for trigger in (
        "messages_search_insert",
        "messages_search_delete",
        "messages_search_update",
        "messages_latest_insert",
        "messages_latest_delete",
        "messages_latest_update",
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + ("" if sqlite else " ON messages"))
    op.execute("DROP TRIGGER IF EXISTS contacts_latest_insert" + ("" if sqlite else " ON contacts"))
    if sqlite:
        op.execute("DROP TABLE IF EXISTS message_search")
    else:
        for function in (
            "messages_latest_inserted",
            "messages_latest_removed",
            "messages_latest_updated",
            "contacts_latest_inserted",
        ):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
        op.execute("DROP INDEX IF EXISTS ix_messages_search")
        op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search")
    op.drop_index("ix_contacts_last_message", table_name="contacts")
    op.drop_index("ix_messages_created", table_name="messages")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("last_message_ms")
    op.drop_index("ix_messages_contact_direction_created", table_name="messages")
