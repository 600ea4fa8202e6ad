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

import httpx
import pytest
from gateway_support import RunningGateway, customer, next_of, serve_gateway
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support import Backend, MakeRelay, RunningRelay, free_port, serve_asgi

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.clock import ManualClock, SystemClock
from tresen.core.http import tls_context
from tresen.gateway.automation.agent_bot import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tresen.gateway.automation.config import AutomationSettings, parse_bot_file
from tresen.gateway.automation.engine import Automation
from tresen.gateway.automation.store import AutomationStore
from tresen.gateway.inbox.agents import Role
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


# --- actions -------------------------------------------------------------------------------------

SHOP = """
intents:
  - name: cancel_order
    title: {en: Cancel order, de: Stornieren}
    examples:
      - "I want to cancel my order"
      - "Bitte stornieren Sie meine Bestellung"
      - "cancel order"
    answer: {action: cancel_order}
  - name: order_status
    title: {en: Order status, de: Bestellstatus}
    examples:
      - "Where is my parcel?"
      - "Wo ist meine Bestellung?"
      - "order status tracking"
    answer: {action: order_status}
actions:
  - name: cancel_order
    url: "SHOP/orders/{{params.order}}/cancellation"
    method: POST
    headers: {Authorization: "Bearer shop-secret"}
    body: '{"order": "{{params.order}}", "phone": "{{customer.phone}}"}'
    timeout_s: 2
    retries: 0
    params:
      - name: order
        pattern: "\\\\b(\\\\d{5,8})\\\\b"
        ask: {en: "Which order? Please write its number.", de: "Welche Bestellung?"}
    answer:
      en: "Order {{response.order}} is cancelled; {{response.refund}} EUR go back to your card."
      de: "Bestellung {{response.order}} ist storniert; {{response.refund}} EUR gehen zurück."
  - name: order_status
    url: "SHOP/slow/{{params.order}}"
    timeout_s: 0.3
    retries: 1
    params:
      - name: order
        pattern: "\\\\b(\\\\d{5,8})\\\\b"
        ask: {en: "Which order? Please write its number.", de: "Welche Bestellung?"}
    answer: {en: "Order {{response.order}}: {{response.status}}"}
"""


@dataclass
class Shop:
    """The shop's own system: it cancels orders, and its status lookup never answers."""

    cancelled: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    stuck: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def cancel(request: Request) -> JSONResponse:
            self.authorizations.append(request.headers.get("authorization", ""))
            body = await request.json()
            self.cancelled.append(body)
            return JSONResponse({"order": body["order"], "refund": "49.90"})

        async def slow(request: Request) -> JSONResponse:
            await self.stuck.wait()
            return JSONResponse({"order": "?", "status": "late"})

        return Starlette(
            routes=[
                Route("/orders/{order}/cancellation", cancel, methods=["POST"]),
                Route("/slow/{order}", slow),
            ]
        )


async def test_an_order_is_cancelled_by_chat_and_a_timeout_hands_over(desk: Desk) -> None:
    shop = Shop()
    async with serve_asgi(shop.app()) as url:
        await desk.bot(SHOP.replace("SHOP", url))
        anna = await desk.customer()
        await written(desk, anna, "I want to cancel my order")
        assert await said(anna) == "Which order? Please write its number."
        contact = await written(desk, anna, "it is 1234567")
        assert await said(anna) == "Order 1234567 is cancelled; 49.90 EUR go back to your card."
        assert shop.cancelled == [{"order": "1234567", "phone": anna.phone}]
        assert shop.authorizations == ["Bearer shop-secret"]
        assert await desk.status(contact) == str(Status.BOT)

        # The status lookup times out (twice): a polite answer, and people take over.
        await written(desk, anna, "Where is my parcel 7654321?")
        assert await said(anna) == "Sorry, I cannot look that up right now."
        assert (await said(anna)).startswith("I am passing you on")
        assert await desk.status(contact) == str(Status.OPEN)
        [handoff] = await desk.activities(contact, "handoff")
        record = json.loads(handoff)
        assert record["reason"] == "action_failed"
        assert record["detail"].startswith("order_status: ")
        shop.stuck.set()


# --- the business's own bot ----------------------------------------------------------------------


@dataclass
class OwnBot:
    """The business's bot: it checks each post's signature, answers greetings through the
    inbox's JSON API, and hands anything else over."""

    secret: str
    token: str
    inbox: str
    clock: ManualClock
    posts: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> JSONResponse:
            raw = await request.body()
            timestamp = int(request.headers[TIMESTAMP_HEADER])
            signed = verify(
                self.secret,
                timestamp,
                raw,
                request.headers[SIGNATURE_HEADER],
                now_s=self.clock.now_ms() // 1000,
            )
            if not signed:
                return JSONResponse({"error": "bad signature"}, status_code=401)
            post = json.loads(raw)
            self.posts.append(post)
            asyncio.get_running_loop().create_task(self.answer(post))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/bot", receive, methods=["POST"])])

    async def answer(self, post: dict[str, Any]) -> None:
        contact = post["conversation"]["id"]
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(
            verify=tls_context(), base_url=self.inbox, headers=headers
        ) as api:
            if post["content"].lower().startswith("hi"):
                sent = await api.post(
                    f"/conversations/{contact}/messages", json={"text": "Hi! I am the shop's bot."}
                )
                assert sent.status_code == 201, sent.text
            else:
                handed = await api.post(
                    f"/conversations/{contact}/handoff", json={"reason": "not my topic"}
                )
                assert handed.status_code == 200, handed.text
                assert handed.json()["status"] == "open"


async def test_the_business_own_bot_answers_and_hands_over_through_the_inbox_api(
    desk: Desk,
) -> None:
    agents = desk.gw.app.state.inbox_agents
    bot_agent = await agents.create("shopbot", "Shop bot", Role.AGENT, "a long bot password 1")
    _listed, token = await desk.gw.app.state.inbox_tokens.create(bot_agent.id, "the bot")
    secret = await desk.store.new_agent_bot_secret()
    own = OwnBot(secret, token, desk.gw.url + "/inbox/api/v1", desk.clock)
    async with serve_asgi(own.app()) as url:
        await desk.configure(bot={"mode": "external", "external_url": url + "/bot"})
        anna = await desk.customer()
        contact = await written(desk, anna, "hi there")
        assert await said(anna) == "Hi! I am the shop's bot."
        [post] = own.posts
        assert post["event"] == "message_created"
        assert post["content"] == "hi there"
        assert post["conversation"]["id"] == contact
        assert post["sender"]["phone_number"] == anna.phone
        assert await desk.status(contact) == str(Status.BOT)

        await written(desk, anna, "I need help with a return")
        assert (await said(anna)).startswith("I am passing you on")
        [handoff] = await desk.activities(contact, "handoff")
        assert json.loads(handoff)["reason"] == "external"
        assert json.loads(handoff)["detail"] == "not my topic"
        # People have it: the bot is posted nothing more.
        await written(desk, anna, "hello?")
        assert len(own.posts) == 2


async def test_a_bot_that_is_down_hands_over(desk: Desk) -> None:
    await desk.configure(
        bot={"mode": "external", "external_url": f"http://127.0.0.1:{free_port()}/bot"}
    )
    anna = await desk.customer()
    contact = await written(desk, anna, "hello")
    assert (await said(anna)).startswith("I am passing you on")
    [handoff] = await desk.activities(contact, "handoff")
    assert json.loads(handoff)["reason"] == "external_down"


async def test_did_you_mean_offers_buttons_and_a_press_answers(desk: Desk) -> None:
    # Thresholds that make every question a suggestion.
    await desk.bot(bot={"mode": "faq", "answer_threshold": 0.99, "suggest_threshold": 0.05})
    anna = await desk.customer()
    await anna.send_text(desk.gw.gateway.phone, "my dog and my suitcase")
    while True:
        event = await next_of(anna, MessageEvent, 15)
        if not event.outgoing:
            break
    assert isinstance(event.payload, Interactive)
    assert event.payload.body == "Did you mean one of these?"
    titles = [b.title for b in event.payload.buttons]
    assert 1 <= len(titles) <= 3
    assert {"Pets", "Baggage"} <= set(titles)
    await anna.answer(desk.gw.gateway.phone, event.message_id, "intent:pets")
    assert await said(anna) == "Pets up to 8 kg fly in the cabin."
    assert await desk.store.unanswered() == []  # a suggestion is no unanswered question


async def test_customers_writing_at_once_while_the_bot_loads_are_all_answered(desk: Desk) -> None:
    await desk.bot()
    customers = [await desk.customer(name) for name in ("anna", "ben", "cem")]
    # The first messages arrive while the bot's configuration is read and its matcher built.
    await asyncio.gather(
        *(
            c.send_text(desk.gw.gateway.phone, "How much luggage can I take with me?")
            for c in customers
        )
    )
    answers = await asyncio.gather(*(said(c) for c in customers))
    assert answers == ["One bag of 23 kg is included."] * 3


async def test_assigning_a_conversation_of_the_bot_takes_it_from_the_bot(desk: Desk) -> None:
    await desk.bot()
    anna = await desk.customer()
    contact = await written(desk, anna, "How much luggage can I take with me?")
    assert await said(anna) == "One bag of 23 kg is included."
    state = desk.gw.app.state
    owner = await state.inbox_agents.create("olga", "Olga Owner", Role.OWNER, "a long password 1")
    await state.inbox_actions.assign(owner, contact, owner.id)
    assert await desk.status(contact) == str(Status.OPEN)
    await written(desk, anna, "Can I bring my dog on the plane?")
    await nothing_more(desk, anna)
