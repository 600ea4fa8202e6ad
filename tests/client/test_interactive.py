"""Interactive messages, quick replies and typing between a business's client and a
customer's, through a relay with a controllable clock: the customer answers buttons and lists
and taps a template's quick replies; the business sees what was chosen, "typing…" comes and
goes without ever being a message, and nothing else may travel as a system message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import insert, select
from support import DELIVERY_TOMORROW, SLOTS, YES_NO, RunningRelay, read_last_code

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.choices import Choice
from tresen.client.events import DecryptionFailed, MessageEvent, StatusChanged, TypingStarted
from tresen.client.store import MessageStatus
from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.relay.schema import consents, quality_events
from tresen.wire import relay as wire
from tresen.wire.e2e import (
    TYPING_MS,
    Button,
    ButtonReply,
    Interactive,
    InteractiveKind,
    InteractiveReply,
    InvalidPayload,
    ReplyKind,
    Template,
    Text,
)

E = TypeVar("E")


@dataclass
class Shop:
    relay: RunningRelay
    clock: ManualClock
    tmp_path: Path
    ops: dict[str, str]
    clients: list[Client] = field(default_factory=list)

    async def person(self, name: str, phone: str | None = None) -> Client:
        """A registered, running client (``phone``: another device of that number)."""
        phone = phone or self.relay.next_phone()
        client = Client.open(self.tmp_path / name, self.relay.url, clock=self.clock)
        self.clients.append(client)
        await client.request_code(phone)
        code = read_last_code(self.relay.sms_file, phone)
        assert code is not None
        await client.register(phone, code, device_name=name)
        client.start()
        await client.wait_drained()
        return client

    async def business(self) -> Client:
        business = await self.person("shop")
        await business.save_business_profile(display_name="Tresen Versand")
        return business

    async def approved(self, business: Client, template: dict[str, Any]) -> str:
        created = await business.api.submit_template(template)
        r = await self.relay.http.post(
            f"/v1/admin/templates/{created['id']}/approve", headers=self.ops
        )
        assert r.status_code == 200, r.text
        return str(created["id"])

    async def opted_in(self, business: Client, customer: Client) -> None:
        now = self.clock.now_ms()
        async with self.relay.ctx.db.write() as conn:
            await conn.execute(
                insert(consents).values(
                    business_account=business.account_id,
                    customer_account=customer.account_id,
                    scope="utility",
                    state="opted_in",
                    source="customer",
                    updated_ms=now,
                )
            )


@pytest.fixture
async def shop(make_relay: Any, tmp_path: Path) -> AsyncIterator[Shop]:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        token = await relay.ctx.operator.create_token("ops", by="test")
        made = Shop(relay, clock, tmp_path, {"Authorization": f"Bearer {token}"})
        yield made
        for client in made.clients:
            await client.close()


async def next_of(client: Client, kind: type[E], within_s: float = 20) -> E:
    async def wait() -> E:
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event

    return await asyncio.wait_for(wait(), within_s)


async def customer_writes(shop: Shop, business: Client, customer: Client, text: str) -> str:
    """The customer writes (opening the business's window); the business receives it."""
    sent = await customer.send_text(business.phone or "", text)
    received = await next_of(business, MessageEvent)
    assert received.message_id == sent.message_id
    return sent.message_id


async def test_the_customer_answers_reply_buttons_and_lists(shop: Shop) -> None:
    business = await shop.business()
    customer = await shop.person("ana")
    question = await customer_writes(shop, business, customer, "Where is my parcel?")

    asked = await business.send_interactive(customer.phone or "", YES_NO)
    shown = await next_of(customer, MessageEvent)
    assert (shown.message_id, shown.payload) == (asked.message_id, YES_NO)
    assert await customer.choices(asked.message_id) == [
        Choice(1, "yes", "Yes"),
        Choice(2, "no", "No, keep it"),
    ]
    with pytest.raises(ValueError, match=r"“maybe” is not an option .* yes \(Yes\), no \(No"):
        await customer.answer(business.phone or "", asked.message_id, "maybe")
    with pytest.raises(ValueError, match=f"no message {question} was received in this chat"):
        await customer.answer(business.phone or "", question, "yes")
    plain = await business.send_text(customer.phone or "", "One moment")
    await next_of(customer, MessageEvent)
    with pytest.raises(ValueError, match="is not an interactive message"):
        await customer.answer(business.phone or "", plain.message_id, "yes")

    await customer.answer(business.phone or "", asked.message_id, "no")
    answer = await next_of(business, MessageEvent)
    assert answer.payload == InteractiveReply(
        kind=ReplyKind.BUTTON_REPLY, message_id=asked.message_id, id="no", title="No, keep it"
    )
    stored = business.store.message(answer.message_id)
    assert stored is not None
    assert stored.status is MessageStatus.RECEIVED

    listed = await business.send_interactive(customer.phone or "", SLOTS)
    await next_of(customer, MessageEvent)
    # Rows are numbered across sections, as the app shows them; a number picks one.
    await customer.choose(business.phone or "", listed.message_id, "1")
    picked = await next_of(business, MessageEvent)
    assert picked.payload == InteractiveReply(
        kind=ReplyKind.LIST_REPLY,
        message_id=listed.message_id,
        id="am",
        title="Morning",
        description="8 am to noon",
    )
    await customer.choose(business.phone or "", listed.message_id, "All day")
    assert (await next_of(business, MessageEvent)).payload.id == "fri"  # type: ignore[union-attr]

    # A message that breaks the limits never leaves the business.
    broken = Interactive(
        type=InteractiveKind.BUTTON,
        body="Choose",
        header="h" * 61,
        buttons=[Button(id="a", title="A")],
    )
    with pytest.raises(InvalidPayload, match="length <= 60"):
        await business.send_interactive(customer.phone or "", broken)


async def test_a_quick_reply_tap_returns_the_payload_the_business_set(shop: Shop) -> None:
    business = await shop.business()
    customer = await shop.person("ana")
    template_id = await shop.approved(business, DELIVERY_TOMORROW)
    await shop.opted_in(business, customer)
    components = [
        {"type": "body", "parameters": [{"type": "text", "text": "#4711"}]},
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "4711"}],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "1",
            "parameters": [{"type": "payload", "payload": "NEIGHBOUR-4711"}],
        },
    ]

    sent = await business.send_template(
        customer.phone or "", template_id, "en_US", components=components
    )

    received = await next_of(customer, MessageEvent)
    assert received.template is not None
    assert "NEIGHBOUR-4711" not in received.template.text()
    assert isinstance(received.payload, Template)
    assert received.payload.button_payloads == {"button:1": "NEIGHBOUR-4711"}
    assert await customer.choices(sent.message_id) == [
        Choice(1, "Leave with neighbour", "Leave with neighbour", button_index=1),
        Choice(2, "Stop updates", "Stop updates", button_index=2),
    ]

    await customer.tap_quick_reply(business.phone or "", sent.message_id, 1)
    tapped = await next_of(business, MessageEvent)
    assert tapped.payload == ButtonReply(
        message_id=sent.message_id, payload="NEIGHBOUR-4711", text="Leave with neighbour"
    )
    # A quick reply without a payload returns its text.
    await customer.choose(business.phone or "", sent.message_id, "2")
    tapped = await next_of(business, MessageEvent)
    assert tapped.payload == ButtonReply(
        message_id=sent.message_id, payload="Stop updates", text="Stop updates"
    )
    with pytest.raises(ValueError, match=r"its quick replies are 1 \(Leave with neighbour\)"):
        await customer.tap_quick_reply(business.phone or "", sent.message_id, 0)


async def test_typing_shows_for_25_seconds_and_is_never_a_message(shop: Shop) -> None:
    business = await shop.business()
    customer = await shop.person("ana")
    question = await customer_writes(shop, business, customer, "Is the shop open today?")

    desk = await shop.person("desk", business.phone)  # a second device of the business

    await business.typing(customer.phone or "", question)

    typing = await next_of(customer, TypingStarted)
    assert typing == TypingStarted(
        business.account_id or "", question, shop.clock.now_ms() + TYPING_MS
    )
    # The business's other device learns of the answer, not of the typing before it.
    answer = await business.send_text(customer.phone or "", "Yes, until 6 pm")
    seen = []
    while not (seen and isinstance(seen[-1], MessageEvent)):
        seen.append(await desk.next_event(20))
    assert not [e for e in seen if isinstance(e, TypingStarted)]
    assert seen[-1].message_id == answer.message_id  # type: ignore[union-attr]
    for client, chat in ((customer, business.account_id), (business, customer.account_id)):
        assert [m.message_id for m in client.store.messages(chat or "")] == [
            question,
            answer.message_id,
        ]
    assert [c.account_id for c in customer.store.chats()] == [business.account_id]

    # Typing keeps to the window, like every free-form message from a business.
    shop.clock.advance(hours=24)
    with pytest.raises(RelayError) as closed:
        await business.typing(customer.phone or "", question)
    assert closed.value.code == ErrorCode.REENGAGEMENT


async def test_only_typing_may_travel_as_a_system_message(shop: Shop) -> None:
    business = await shop.business()
    customer = await shop.person("ana")
    await customer_writes(shop, business, customer, "Hello?")

    # Sent as SYSTEM, a text would dodge the rates; the customer's client refuses it.
    disguised = await business.send(
        customer.phone or "", Text(text="SALE! 50% off"), klass=wire.MessageClass.SYSTEM
    )

    failed = await next_of(customer, DecryptionFailed)
    assert failed.message_id == disguised.message_id
    assert failed.reason == (
        "class_mismatch: a message of class system carries a text payload, not a typing indicator "
        "or a retry request"
    )
    stored = customer.store.message(disguised.message_id)
    assert stored is not None
    assert (stored.status, stored.payload) == (MessageStatus.FAILED, None)
    async with shop.relay.ctx.db.read() as conn:
        [report] = (
            await conn.execute(
                select(
                    quality_events.c.kind,
                    quality_events.c.reason,
                    quality_events.c.detail,
                    quality_events.c.message_id,
                )
            )
        ).all()
    assert tuple(report) == ("report", "other", failed.reason, disguised.message_id)


async def test_statuses_carry_the_time_and_the_pricing_facts(shop: Shop) -> None:
    business = await shop.business()
    customer = await shop.person("ana")
    await customer_writes(shop, business, customer, "Hello?")

    shop.clock.advance(seconds=5)
    reply = await business.send_text(customer.phone or "", "Hello Ana, how can we help?")
    await next_of(customer, MessageEvent)
    delivered = await next_of(business, StatusChanged)
    shop.clock.advance(seconds=30)
    await customer.mark_read(business.phone or "")
    read = await next_of(business, StatusChanged)

    assert delivered == StatusChanged(
        reply.message_id,
        customer.account_id or "",
        MessageStatus.DELIVERED,
        pricing=wire.PricingFacts(
            billable=False, pricing_model="PMP", type="free_customer_service", category="service"
        ),
        server_ms=reply.server_ms,
    )
    assert read == StatusChanged(
        reply.message_id,
        customer.account_id or "",
        MessageStatus.READ,
        server_ms=reply.server_ms + 30_000,
    )
