"""The migrations create exactly the tables, columns and indexes ``relay/schema.py`` declares."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from support import Backend

from tresen.core.ids import MessageId
from tresen.relay import migrate
from tresen.relay.schema import metadata


async def test_migrations_match_the_declared_schema(backend: Backend) -> None:
    db = backend.database()
    try:
        await migrate.upgrade(db)

        def differences(connection: Any) -> list[Any]:
            context = MigrationContext.configure(connection)
            return list(compare_metadata(context, metadata))

        async with db.read() as conn:
            diff = await conn.run_sync(differences)
        assert diff == []
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await db.dispose()


async def test_messages_stored_before_resends_keep_their_template(backend: Backend) -> None:
    """0006: a template message accepted before the upgrade can be resent as that template."""
    from sqlalchemy import insert, select

    from tresen.relay.schema import mailbox, message_pricing, messages

    db = backend.database()
    try:
        await migrate.upgrade(db, "0005")
        old = {"sender_account": "s", "sender_device_pk": 1, "recipient_account": "r"}
        times = {"server_ms": 1, "expires_ms": 2}
        async with db.write() as conn:
            # Written with the 0005 columns only (the declared table has more).
            for message_id, klass in (("waiting", 1), ("priced", 1), ("session", 0)):
                await conn.execute(
                    insert(messages).values(
                        message_id=message_id, client_msg_id=message_id, klass=klass, **old, **times
                    )
                )
            await conn.execute(
                insert(mailbox).values(
                    device_pk=2,
                    kind=0,
                    message_id="waiting",
                    peer_account="s",
                    peer_device=1,
                    klass=1,
                    olm_type=1,
                    payload=b"c",
                    template_id=41,
                    **times,
                )
            )
            await conn.execute(
                insert(message_pricing).values(
                    message_id="priced",
                    business_account="s",
                    recipient_account="r",
                    template_id=42,
                    category="marketing",
                    billable=1,
                    pricing_type="regular",
                    country="DE",
                    price_micros=1,
                    currency="EUR",
                    server_ms=1,
                )
            )
        await migrate.upgrade(db)
        async with db.read() as conn:
            rows = await conn.execute(
                select(messages.c.message_id, messages.c.template_id, messages.c.resends)
            )
            found = {r.message_id: (r.template_id, r.resends) for r in rows}
        assert found == {"waiting": (41, 0), "priced": (42, 0), "session": (None, 0)}
    finally:
        await db.dispose()


async def test_marking_messages_delivered_rewrites_no_index(backend: Backend) -> None:
    """PostgreSQL (0011): the delivered update is heap-only, each new version on its row's
    own page, with no new index entry; on full pages most of them were not."""
    if backend.name != "postgres":
        pytest.skip("SQLite updates rows in place")
    from sqlalchemy import insert, text

    from tresen.relay.mailbox import repo
    from tresen.relay.schema import messages

    db = backend.database()
    count = 400
    try:
        await migrate.upgrade(db)
        async with db.write() as conn:
            await conn.execute(
                insert(messages),
                [
                    {
                        "message_id": f"m{i:05d}",
                        "sender_account": "s",
                        "sender_device_pk": 1,
                        "client_msg_id": f"c{i}",
                        "recipient_account": "r",
                        "klass": 0,
                        "server_ms": 1_000 + i,
                        "expires_ms": 10_000_000 + i,
                    }
                    for i in range(count)
                ],
            )
        ids = [MessageId(f"m{i:05d}") for i in range(count)]
        # The counts of the transaction so far: the update in a transaction of its own, as
        # the relay's acks come.
        counts = text(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
            " WHERE relid = 'messages'::regclass"
        )
        async with db.write() as conn:
            delivered = await repo.mark_delivered(conn, ids, 5_000)
            assert len(delivered) == count
            updated, heap_only = (await conn.execute(counts)).one()
        # All at once, the last rows of a page find no room beside their page's new versions
        # (one in twenty here); acks that come over time leave room to reclaim between them.
        # Full pages: one in a hundred.
        assert updated == count
        assert heap_only >= 0.9 * count
    finally:
        await db.dispose()
