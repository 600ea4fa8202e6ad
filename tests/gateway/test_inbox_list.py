"""The conversation list's order comes from each contact's latest message time, which the
database keeps: whatever order the gateway stores messages and contacts in, and after a
message is removed."""

from __future__ import annotations

import json

from sqlalchemy import delete, insert

from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.gateway.inbox.conversations import Conversations
from tresen.gateway.schema import contacts, messages

ANNA = "a" * 32
BEN = "b" * 32


def message(n: int, contact: str, text: str, at_ms: int) -> dict[str, object]:
    return {
        "wamid": f"wamid.{n}",
        "contact": contact,
        "direction": "in",
        "origin": "customer",
        "type": "text",
        "content": json.dumps({"body": text}),
        "status": "received",
        "created_ms": at_ms,
        "updated_ms": at_ms,
    }


def person(contact: str, name: str, at_ms: int) -> dict[str, object]:
    return {
        "account_id": contact,
        "user_id": f"DE.{contact[:8]}",
        "profile_name": name,
        "created_ms": at_ms,
    }


async def test_the_latest_message_orders_the_list_whenever_its_contact_was_stored(
    db: Database,
) -> None:
    clock = ManualClock()
    inbox = Conversations(db, clock)
    now = clock.now_ms()
    async with db.write() as conn:
        # The gateway stores a new customer's first messages before the customer, in one
        # transaction, several at once.
        await conn.execute(
            insert(messages),
            [message(1, ANNA, "Hallo", now), message(2, ANNA, "Noch da?", now + 2000)],
        )
        await conn.execute(insert(contacts).values(**person(ANNA, "Anna", now)))
    async with db.write() as conn:
        await conn.execute(insert(contacts).values(**person(BEN, "Ben", now)))
        await conn.execute(insert(messages).values(**message(3, BEN, "Moin", now + 1000)))
    assert [(c.name, c.preview, c.last_ms - now) for c in await inbox.list(me=1)] == [
        ("Anna", "Noch da?", 2000),
        ("Ben", "Moin", 1000),
    ]
    async with db.write() as conn:
        await conn.execute(delete(messages).where(messages.c.wamid == "wamid.2"))
    assert [(c.name, c.preview, c.last_ms - now) for c in await inbox.list(me=1)] == [
        ("Ben", "Moin", 1000),
        ("Anna", "Hallo", 0),
    ]
    async with db.write() as conn:
        await conn.execute(delete(messages).where(messages.c.wamid == "wamid.1"))
    assert [c.name for c in await inbox.list(me=1)] == ["Ben"]
    assert [c.name for c in await inbox.list(me=1, limit=1)] == ["Ben"]
