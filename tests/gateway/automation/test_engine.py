"""Automation in a running gateway: greeting and away messages as a customer receives them,
the FAQ bot's answers and suggestions, hand-over to people and the bot's silence until the
conversation is resolved, and actions against the business's own HTTP server.

Relay and gateway share a clock the tests move, so that days and opening hours pass at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gateway_support import RunningGateway, customer, next_of, serve_gateway
from sqlalchemy import select
from support import Backend, MakeRelay, RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.clock import ManualClock, SystemClock
from tresen.gateway.automation.config import AutomationSettings, parse_bot_file
from tresen.gateway.automation.engine import Automation
from tresen.gateway.automation.store import AutomationStore
from tresen.gateway.inbox.conversations import Status
from tresen.gateway.schema import activity, conversations
from tresen.wire.e2e import Interactive, Text

ZONE = ZoneInfo("Europe/Berlin")

BOT = """
intents:
  - name: baggage
    title: {en: Baggage, de: Gepäck}
    examples:
      - "How much luggage can I take with me?"
      - "Wie viel Gepäck darf ich mitnehmen?"
      - "baggage allowance"
    answer:
      text: {en: "One bag of 23 kg is included.", de: "Ein Koffer mit 23 kg ist inklusive."}
  - name: checkin
    title: {en: Check-in, de: Check-in}
    examples:
      - "When does online check-in open?"
      - "Ab wann kann ich online einchecken?"
      - "check in times"
    answer:
      text:
        en: "Online check-in opens 30 hours before."
        de: "Der Check-in öffnet 30 Stunden vorher."
  - name: pets
    title: {en: Pets, de: Haustiere}
    examples:
      - "Can I bring my dog on the plane?"
      - "Darf meine Katze mitfliegen?"
      - "travelling with pets"
    answer:
      text: {en: "Pets up to 8 kg fly in the cabin.", de: "Tiere bis 8 kg fliegen in der Kabine."}
"""


@dataclass
class Desk:
    clock: ManualClock
    relay: RunningRelay
    gw: RunningGateway
    store: AutomationStore
    automation: Automation
    folder: Path
    clients: list[Client] = field(default_factory=list)

    async def configure(self, **settings: Any) -> None:
        await self.store.save_settings(AutomationSettings.from_json(settings))

    async def bot(self, text: str = BOT, **settings: Any) -> None:
        await self.store.import_config(parse_bot_file(text))
        settings.setdefault("bot", {"mode": "faq"})
        await self.configure(**settings)

    async def customer(self, name: str = "anna") -> Client:
        client = await customer(self.relay, self.folder / name)
        self.clients.append(client)
        return client

    async def hours(self, hours: dict[str, list[list[str]]], closed: list[str] = ()) -> None:  # type: ignore[assignment]
        await self.gw.gateway.client.save_business_profile(
            display_name="Gateway Test Shop",
            category="RETAIL",
            timezone="Europe/Berlin",
            hours=hours,
            closed_dates=list(closed),
        )
        await self.gw.gateway.business_profile()

    async def status(self, contact: str) -> str | None:
        async with self.gw.gateway.store.db.read() as conn:
            return (
                await conn.execute(
                    select(conversations.c.status).where(conversations.c.contact == contact)
                )
            ).scalar_one_or_none()

    async def activities(self, contact: str, kind: str) -> list[str]:
        async with self.gw.gateway.store.db.read() as conn:
            rows = await conn.execute(
                select(activity.c.detail)
                .where(activity.c.contact == contact, activity.c.kind == kind)
                .order_by(activity.c.id)
            )
            return [str(d) for d in rows.scalars()]


@pytest.fixture
async def desk(make_relay: MakeRelay, backend: Backend, tmp_path: Path) -> AsyncIterator[Desk]:
    clock = ManualClock(SystemClock().now_ms())
    async with (
        make_relay(clock=clock) as relay,
        serve_gateway(relay, backend, tmp_path, clock=clock) as gw,
    ):
        state = gw.app.state
        desk = Desk(clock, relay, gw, state.automation_store, state.automation, tmp_path)
        try:
            yield desk
        finally:
            for client in desk.clients:
                await client.close()


async def said(client: Client, within_s: float = 15) -> str:
    """The text of the next message the business sends (buttons: their body)."""
    while True:
        event = await next_of(client, MessageEvent, within_s)
        if event.outgoing:
            continue
        if isinstance(event.payload, Text):
            return event.payload.text
        if isinstance(event.payload, Interactive):
            return event.payload.body
        raise AssertionError(f"unexpected {event.payload!r}")


async def written(desk: Desk, client: Client, text: str) -> str:
    """The customer writes ``text``; once automation handled it: the conversation's id."""
    before = desk.automation.handled
    await client.send_text(desk.gw.gateway.phone, text)
    contact = client.account_id
    assert contact is not None
    deadline = asyncio.get_running_loop().time() + 15
    while desk.automation.handled <= before:
        assert asyncio.get_running_loop().time() < deadline, "automation did not handle it"
        await asyncio.sleep(0.02)
    await desk.automation.idle()
    return contact


async def nothing_more(desk: Desk, client: Client) -> None:
    """The business sent nothing more: a marker message from the business arrives next."""
    await desk.gw.send(
        {
            "messaging_product": "whatsapp",
            "to": client.phone,
            "type": "text",
            "text": {"body": "marker"},
        }
    )
    assert await said(client) == "marker"


def at(day: datetime, hour: int, minute: int = 0) -> int:
    return int(day.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp() * 1000)


def next_weekday(weekday: int) -> datetime:
    """The next date (Berlin) with this weekday (0 Monday), at least a day ahead."""
    today = datetime.now(ZONE)
    days = (weekday - today.weekday()) % 7 or 7
    return today + timedelta(days=days)


WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


# --- greeting and away ---------------------------------------------------------------------------


async def test_the_greeting_comes_once_on_the_first_message(desk: Desk) -> None:
    await desk.configure(greeting={"enabled": True})
    anna = await desk.customer()
    await written(desk, anna, "Hello, are you there?")
    assert await said(anna) == "Hello and welcome to Gateway Test Shop! How can we help you?"
    await written(desk, anna, "I have a question about my order")
    await nothing_more(desk, anna)
    # German from a German first message.
    ben = await desk.customer("ben")
    await written(desk, ben, "Hallo, ich habe eine Frage zu meiner Bestellung")
    assert (await said(ben)).startswith("Hallo und willkommen bei Gateway Test Shop!")


async def test_the_greeting_comes_again_after_a_long_silence(desk: Desk) -> None:
    await desk.configure(greeting={"enabled": True, "again_after_days": 7})
    anna = await desk.customer()
    await written(desk, anna, "Hello")
    assert (await said(anna)).startswith("Hello and welcome")
    desk.clock.advance(seconds=6 * 24 * 3600)
    await written(desk, anna, "Hello again")
    await nothing_more(desk, anna)
    desk.clock.advance(seconds=8 * 24 * 3600)
    await written(desk, anna, "Hello after a long time")
    assert (await said(anna)).startswith("Hello and welcome")


async def test_away_only_outside_hours_and_on_closed_dates_once_a_day(desk: Desk) -> None:
    monday = next_weekday(0)
    wednesday = monday + timedelta(days=2)
    await desk.hours(WEEKDAYS_9_TO_5, closed=[wednesday.date().isoformat()])
    await desk.configure(away={"enabled": True})
    anna = await desk.customer()

    desk.clock.set(at(monday, 10))  # open
    await written(desk, anna, "Is my parcel on its way?")
    await nothing_more(desk, anna)

    desk.clock.set(at(monday, 19, 30))  # closed in the evening
    await written(desk, anna, "Hello? Anyone?")
    assert await said(anna) == (
        "Thank you for your message. We are closed right now; our team answers from "
        "tomorrow at 09:00 (Europe/Berlin)."
    )
    desk.clock.set(at(monday, 21))  # once a day
    await written(desk, anna, "Still waiting")
    await nothing_more(desk, anna)

    desk.clock.set(at(wednesday, 11))  # a closed date within the hours
    await written(desk, anna, "Wednesday question")
    assert (await said(anna)).endswith("tomorrow at 09:00 (Europe/Berlin).")


async def test_no_away_message_right_after_an_agent_answered(desk: Desk) -> None:
    saturday = next_weekday(5)
    await desk.hours(WEEKDAYS_9_TO_5)
    await desk.configure(away={"enabled": True}, quiet_after_agent_minutes=15)
    anna = await desk.customer()
    desk.clock.set(at(saturday, 10))
    contact = await written(desk, anna, "Hi, a question")
    assert "We are closed right now" in await said(anna)
    # An agent answers on the weekend; the customer's next messages get no away message.
    sunday = saturday + timedelta(days=1)
    desk.clock.set(at(sunday, 10))
    await desk.gw.gateway.store.db.dispose()  # nothing cached: the rows decide
    conversations_ = desk.gw.app.state.inbox_conversations
    await conversations_.record(contact, 1, "reply", "An agent's answer")
    desk.clock.advance(seconds=5 * 60)
    await written(desk, anna, "Thanks! And another question")
    await nothing_more(desk, anna)
    desk.clock.advance(seconds=20 * 60)  # the quiet time is over: today's away message
    await written(desk, anna, "Hello again")
    assert "We are closed right now" in await said(anna)


async def test_stop_gets_no_greeting(desk: Desk) -> None:
    await desk.configure(greeting={"enabled": True})
    await desk.bot(greeting={"enabled": True})
    anna = await desk.customer()
    await written(desk, anna, "STOP")
    await nothing_more(desk, anna)


# --- the FAQ bot and hand-over -------------------------------------------------------------------


async def test_the_bot_answers_suggests_and_hands_over_when_asked(desk: Desk) -> None:
    await desk.bot()
    anna = await desk.customer()
    contact = await written(desk, anna, "how heavy may my suitcase be")
    assert await said(anna) == "One bag of 23 kg is included."
    assert await desk.status(contact) == str(Status.BOT)

    await written(desk, anna, "Ich möchte bitte mit einem Mitarbeiter sprechen")
    told = await said(anna)
    assert told.startswith("Ich gebe Sie an")
    assert await desk.status(contact) == str(Status.OPEN)
    [handoff] = await desk.activities(contact, "handoff")
    record = json.loads(handoff)
    assert record["reason"] == "person"
    assert [line["from"] for line in record["transcript"]][:2] == ["customer", "business"]
    assert record["transcript"][0]["text"] == "how heavy may my suitcase be"

    # People have it now: the bot is silent, even for a question it knows.
    await written(desk, anna, "How much luggage can I take with me?")
    await nothing_more(desk, anna)

    # Resolved by an agent: the next question is the bot's again.
    await desk.gw.app.state.inbox_conversations.set_status(contact, Status.RESOLVED)
    desk.clock.advance(seconds=1)
    await written(desk, anna, "Can I bring my dog on the plane?")
    assert await said(anna) == "Pets up to 8 kg fly in the cabin."
    assert await desk.status(contact) == str(Status.BOT)


async def test_two_misunderstood_messages_hand_over(desk: Desk) -> None:
    await desk.bot()
    anna = await desk.customer()
    contact = await written(desk, anna, "what is the capital of france")
    assert (await said(anna)).startswith("Sorry, I did not understand that.")
    await written(desk, anna, "who won the football match yesterday")
    assert (await said(anna)).startswith("I am passing you on")
    [handoff] = await desk.activities(contact, "handoff")
    assert json.loads(handoff)["reason"] == "misunderstood"
    unanswered = await desk.store.unanswered()
    assert [u.text for u in unanswered] == [
        "who won the football match yesterday",
        "what is the capital of france",
    ]


async def test_a_hand_over_word_of_the_business_hands_over(desk: Desk) -> None:
    await desk.bot(bot={"mode": "faq", "handoff_keywords": ["complaint", "lawyer"]})
    anna = await desk.customer()
    contact = await written(desk, anna, "I have a complaint about my baggage!")
    assert (await said(anna)).startswith("I am passing you on")
    [handoff] = await desk.activities(contact, "handoff")
    assert json.loads(handoff)["detail"] == "complaint"


async def test_outside_hours_a_hand_over_tells_when_people_answer(desk: Desk) -> None:
    saturday = next_weekday(5)
    await desk.hours(WEEKDAYS_9_TO_5)
    await desk.bot(away={"enabled": True})
    anna = await desk.customer()
    desk.clock.set(at(saturday, 10))
    # The bot answers at the weekend (no away message while it holds the conversation) ...
    await written(desk, anna, "baggage allowance?")
    assert await said(anna) == "One bag of 23 kg is included."
    # ... and says when people are back when it hands over.
    await written(desk, anna, "I want to talk to a human")
    assert await said(anna) == (
        "I am passing you on to our team. They are not in right now and will answer here "
        "from Monday at 09:00 (Europe/Berlin)."
    )
