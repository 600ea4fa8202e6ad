"""The inbox's conversations over the gateway's own record of messages, with an injected
clock: unread counts, the 24-hour window, filters, snoozing and reopening."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import insert, update

from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.gateway.inbox.conversations import Conversations, ConversationState, Mine, Status
from tresen.gateway.schema import contacts, messages

HOUR_MS = 3600 * 1000
ANNA = "a" * 32
BEN = "b" * 32


class Record:
    """Writes what the gateway records of customers and their messages."""

    def __init__(self, db: Database, clock: ManualClock) -> None:
        self.db = db
        self.clock = clock
        self.count = 0

    async def customer(self, account_id: str, name: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(contacts).values(
                    account_id=account_id,
                    phone="+49151" + account_id[:6].replace("a", "1").replace("b", "2"),
                    user_id=f"DE.{account_id[:8]}",
                    profile_name=name,
                    created_ms=self.clock.now_ms(),
                )
            )

    async def message(self, account_id: str, text: str, *, incoming: bool = True) -> None:
        self.count += 1
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await conn.execute(
                insert(messages).values(
                    wamid=f"wamid.{self.count}",
                    contact=account_id,
                    direction="in" if incoming else "out",
                    origin="customer" if incoming else "api",
                    type="text",
                    content=json.dumps({"body": text}),
                    status="received" if incoming else "sent",
                    created_ms=now,
                    updated_ms=now,
                )
            )
            if incoming:
                await conn.execute(
                    update(contacts)
                    .where(contacts.c.account_id == account_id)
                    .values(last_inbound_ms=now)
                )


async def test_unread_window_filters_snoozing_and_reopening(db: Database) -> None:
    clock = ManualClock()
    record = Record(db, clock)
    inbox = Conversations(db, clock)
    await record.customer(ANNA, "Anna")
    await record.customer(BEN, "Ben")
    await record.message(ANNA, "Wo ist mein Paket?")
    clock.advance(minutes=1)
    await record.message(ANNA, "Hallo?")
    clock.advance(minutes=1)
    await record.message(BEN, "Danke!")

    listed = await inbox.list(me=1)
    assert [(c.name, c.preview, c.unread) for c in listed] == [
        ("Ben", "Danke!", 1),
        ("Anna", "Hallo?", 2),
    ]
    anna = listed[1]
    assert anna.window_left_ms == 24 * HOUR_MS - 60_000
    shown = await inbox.show(ANNA)
    assert shown is not None
    assert [m.text for m in shown.messages] == ["Wo ist mein Paket?", "Hallo?"]
    clock.advance(seconds=1)
    await record.message(ANNA, "Noch da?")
    assert [c.unread for c in await inbox.list(me=1) if c.name == "Anna"] == [1]

    # Mine and unassigned.
    await inbox.assign(ANNA, 7)
    assert [c.name for c in await inbox.list(me=7, mine=Mine.MINE)] == ["Anna"]
    assert [c.name for c in await inbox.list(me=7, mine=Mine.UNASSIGNED)] == ["Ben"]

    # Pending until the customer writes again.
    await inbox.set_status(BEN, Status.PENDING)
    assert [c.name for c in await inbox.list(me=1)] == ["Anna"]
    assert [c.name for c in await inbox.list(me=1, status=Status.PENDING)] == ["Ben"]
    clock.advance(minutes=5)
    await record.message(BEN, "Und jetzt?")
    assert {c.name: c.status for c in await inbox.list(me=1)} == {
        "Ben": Status.OPEN,
        "Anna": Status.OPEN,
    }

    # Snoozed for an hour: away until then, back after.
    with pytest.raises(ValueError, match="future"):
        await inbox.set_status(ANNA, Status.SNOOZED, clock.now_ms())
    await inbox.set_status(ANNA, Status.SNOOZED, clock.now_ms() + HOUR_MS)
    assert [c.name for c in await inbox.list(me=1)] == ["Ben"]
    assert [c.name for c in await inbox.list(me=1, status=Status.SNOOZED)] == ["Anna"]
    clock.advance(minutes=59)
    assert [c.name for c in await inbox.list(me=1, status=Status.SNOOZED)] == ["Anna"]
    clock.advance(minutes=1)
    assert [c.name for c in await inbox.list(me=1, status=Status.SNOOZED)] == []
    assert {c.name for c in await inbox.list(me=1)} == {"Anna", "Ben"}

    # Resolved stays resolved until the customer writes; the window closes after 24 hours.
    await inbox.set_status(ANNA, Status.RESOLVED)
    assert [c.name for c in await inbox.list(me=1, status=Status.RESOLVED)] == ["Anna"]
    clock.advance(hours=25)
    assert [c.window_open for c in await inbox.list(me=1, status=Status.RESOLVED)] == [False]
    await record.message(ANNA, "Noch eine Frage")
    reopened = [c for c in await inbox.list(me=1) if c.name == "Anna"]
    assert [(c.status, c.window_open) for c in reopened] == [(Status.OPEN, True)]


async def test_labels_mark_conversations_and_filter_the_list(db: Database) -> None:
    clock = ManualClock()
    record = Record(db, clock)
    inbox = Conversations(db, clock)
    await record.customer(ANNA, "Anna")
    await record.customer(BEN, "Ben")
    await record.message(ANNA, "Ich will mein Geld zurück")
    await record.message(BEN, "Danke!")

    assert await inbox.labels.put(ANNA, "Refund") == "refund"
    await inbox.labels.put(ANNA, "refund")  # once is enough
    await inbox.labels.put(BEN, "vip")
    await inbox.labels.put(ANNA, "vip")
    assert await inbox.labels.all() == ("refund", "vip")
    assert [c.name for c in await inbox.list(me=1, label="refund")] == ["Anna"]
    assert {c.name for c in await inbox.list(me=1, label="vip")} == {"Anna", "Ben"}
    assert [c.labels for c in await inbox.list(me=1) if c.name == "Anna"] == [("refund", "vip")]
    await inbox.labels.take_off(ANNA, "vip")
    assert [c.name for c in await inbox.list(me=1, label="vip")] == ["Ben"]
    for bad in ("", "two words", "x" * 33, "<b>"):
        with pytest.raises(ValueError, match="label"):
            await inbox.labels.put(ANNA, bad)


async def test_the_status_read_for_the_bot_follows_every_change_at_once(db: Database) -> None:
    clock = ManualClock()
    record = Record(db, clock)
    inbox = Conversations(db, clock)
    await record.customer(ANNA, "Anna")
    await record.message(ANNA, "Wo ist mein Paket?")
    assert await inbox.state(ANNA) == ConversationState(None, 0, None)

    await inbox.set_status(ANNA, Status.BOT)
    assert (await inbox.state(ANNA)).status is Status.BOT
    clock.advance(minutes=1)
    await inbox.set_status(ANNA, Status.OPEN)
    opened = await inbox.state(ANNA)
    assert (opened.status, opened.status_ms) == (Status.OPEN, clock.now_ms())
    assert await inbox.take(ANNA, 7)
    assert (await inbox.state(ANNA)).assignee == 7
    await inbox.assign(ANNA, None)

    # Read while a change is being written: what was read then is not kept.
    reading = asyncio.ensure_future(inbox.state(ANNA))
    await inbox.set_status(ANNA, Status.RESOLVED)
    assert (await reading).assignee is None
    assert (await inbox.state(ANNA)).status is Status.RESOLVED
