"""Interactive messages, quick replies and "typing…" in the terminal app: buttons and lists
shown with numbered options, ``/choose N`` answering the latest of them, replies shown as
"↩ Yes" on both sides, and "typing…" in the chat's title for at most 25 seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import insert
from support import DELIVERY_TOMORROW, SLOTS, YES_NO, RunningRelay, read_last_code
from textual.pilot import Pilot
from textual.widgets import Static

from tresen.client import Client
from tresen.client.app import ChatModel, LineKind
from tresen.client.events import DecryptionFailed, MessageEvent, TypingStarted
from tresen.client.tui import ChatApp, LineView
from tresen.core.clock import ManualClock
from tresen.relay.schema import consents
from tresen.wire import relay as wire
from tresen.wire.e2e import (
    ButtonReply,
    InteractiveReply,
    Text,
)

E = TypeVar("E")


@dataclass
class Town:
    relay: RunningRelay
    clock: ManualClock
    tmp_path: Path
    ops: dict[str, str]
    clients: list[Client] = field(default_factory=list)

    async def person(self, name: str) -> Client:
        phone = self.relay.next_phone()
        client = Client.open(self.tmp_path / name, self.relay.url, clock=self.clock)
        self.clients.append(client)
        await client.request_code(phone)
        code = read_last_code(self.relay.sms_file, phone)
        assert code is not None
        await client.register(phone, code, device_name=name)
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
        async with self.relay.ctx.db.write() as conn:
            await conn.execute(
                insert(consents).values(
                    business_account=business.account_id,
                    customer_account=customer.account_id,
                    scope="utility",
                    state="opted_in",
                    source="customer",
                    updated_ms=self.clock.now_ms(),
                )
            )


@pytest.fixture
async def town(make_relay: Any, tmp_path: Path) -> AsyncIterator[Town]:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        token = await relay.ctx.operator.create_token("ops", by="test")
        made = Town(relay, clock, tmp_path, {"Authorization": f"Bearer {token}"})
        yield made
        for client in made.clients:
            await client.close()


async def feed_until(client: Client, model: ChatModel, kind: type[E]) -> E:
    """Feed the model the client's events up to the first of ``kind``."""
    while True:
        event = await client.next_event(30)
        await model.handle(event)
        if isinstance(event, kind):
            return event


async def next_of(client: Client, kind: type[E]) -> E:
    while True:
        event = await client.next_event(30)
        if isinstance(event, kind):
            return event


def messages(model: ChatModel, chat: str | None) -> list[tuple[str | None, str]]:
    """(marker, text) of the chat's message lines."""
    return [
        (line.marker, line.text)
        for line in model.lines(chat or "")
        if line.kind is LineKind.MESSAGE
    ]


async def test_buttons_lists_and_quick_replies_are_shown_and_chosen(town: Town) -> None:
    shop = await town.business()
    customer = await town.person("ana")
    template_id = await town.approved(shop, DELIVERY_TOMORROW)
    await town.opted_in(shop, customer)
    shop.start()
    customer.start()
    model = ChatModel(customer)
    desk = ChatModel(shop)  # the business's own app
    await model.submit(f"/new {shop.phone}")
    await model.submit("/choose 1")
    assert model.feedback.startswith("Tresen Versand asked nothing to choose from")
    await model.submit("Where is my parcel?")
    await feed_until(shop, desk, MessageEvent)

    await shop.send_interactive(customer.phone or "", YES_NO)
    await feed_until(customer, model, MessageEvent)
    assert messages(model, shop.account_id)[-1] == (
        "buttons · /choose 1…2",
        "Parcel #4711\nMay we leave it with a neighbour?\nTresen Versand\n[1] Yes\n[2] No, keep it",
    )
    await model.submit("/choose")
    assert model.feedback == "Choose with /choose and a number: 1. Yes · 2. No, keep it"
    await model.submit("/choose 3")
    assert model.feedback == (
        "There is no option “3”. Choose with /choose N: 1. Yes · 2. No, keep it"
    )
    await model.submit("/choose 2")
    assert messages(model, shop.account_id)[-1] == (None, "↩ No, keep it")
    reply = await feed_until(shop, desk, MessageEvent)
    assert isinstance(reply.payload, InteractiveReply)
    assert reply.payload.id == "no"
    assert messages(desk, customer.account_id)[-2:] == [
        (
            "buttons",
            "Parcel #4711\nMay we leave it with a neighbour?\nTresen Versand\n[1] Yes\n"
            "[2] No, keep it",
        ),
        (None, "↩ No, keep it"),
    ]

    await shop.send_interactive(customer.phone or "", SLOTS)
    await feed_until(customer, model, MessageEvent)
    assert messages(model, shop.account_id)[-1] == (
        "list · /choose 1…3",
        "When shall we come?\n☰ Pick a slot\nTomorrow\n  [1] Morning · 8 am to noon\n"
        "  [2] Afternoon\nFriday\n  [3] All day",
    )
    await model.submit("/choose all day")  # a title does as well as a number
    picked = await feed_until(shop, desk, MessageEvent)
    assert isinstance(picked.payload, InteractiveReply)
    assert picked.payload.id == "fri"

    components = [
        {"type": "body", "parameters": [{"type": "text", "text": "#4711"}]},
        {
            "type": "button",
            "sub_type": "url",
            "index": 0,
            "parameters": [{"type": "text", "text": "4711"}],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": 1,
            "parameters": [{"type": "payload", "payload": "NEIGHBOUR-4711"}],
        },
    ]
    await shop.send_template(customer.phone or "", template_id, "en_US", components=components)
    await feed_until(customer, model, MessageEvent)
    assert messages(model, shop.account_id)[-1] == (
        "template · utility · /choose 1…2",
        "Your parcel #4711 arrives tomorrow.\n[Track] https://shop.example/o/4711\n"
        "[1] Leave with neighbour\n[2] Stop updates",
    )
    await model.submit("/choose 1")
    assert messages(model, shop.account_id)[-1] == (None, "↩ Leave with neighbour")
    tapped = await feed_until(shop, desk, MessageEvent)
    assert tapped.payload == ButtonReply(
        message_id=tapped.payload.message_id,  # type: ignore[union-attr]
        payload="NEIGHBOUR-4711",
        text="Leave with neighbour",
    )


async def test_typing_shows_in_the_title_until_the_answer_or_25_seconds(town: Town) -> None:
    shop = await town.business()
    customer = await town.person("ana")
    customer.start()
    model = ChatModel(customer)
    await model.submit(f"/new {shop.phone}")
    await model.submit("Are you open on Sunday?")
    [question] = customer.store.messages(shop.account_id or "")

    await shop.typing(customer.phone or "", question.message_id)
    await feed_until(customer, model, TypingStarted)
    assert model.heading(shop.account_id or "").endswith(" · typing…")
    town.clock.advance(ms=24_999)
    assert model.heading(shop.account_id or "").endswith(" · typing…")
    town.clock.advance(ms=1)
    assert "typing" not in model.heading(shop.account_id or "")

    await shop.typing(customer.phone or "", question.message_id)
    await feed_until(customer, model, TypingStarted)
    assert model.heading(shop.account_id or "").endswith(" · typing…")
    await shop.send_text(customer.phone or "", "No, only Monday to Saturday")
    await feed_until(customer, model, MessageEvent)
    assert "typing" not in model.heading(shop.account_id or "")
    # Never a line of the chat.
    assert [text for _, text in messages(model, shop.account_id)] == [
        "Are you open on Sunday?",
        "No, only Monday to Saturday",
    ]


async def test_a_disguised_system_message_shows_as_refused(town: Town) -> None:
    shop = await town.business()
    customer = await town.person("ana")
    customer.start()
    model = ChatModel(customer)
    await customer.send_text(shop.phone or "", "Hello?")
    await shop.send(customer.phone or "", Text(text="SALE!"), klass=wire.MessageClass.SYSTEM)
    await feed_until(customer, model, DecryptionFailed)

    [refused] = [
        line.text for line in model.lines(shop.account_id or "") if line.kind is LineKind.FAILED
    ]
    assert refused.startswith(
        f"⚠ A message from {shop.phone} is not shown: it came as a system message, which only "
        "“typing…” may be (a message of class system carries a text payload"
    )
    assert refused.endswith("it was reported to your operator.")
    assert "SALE" not in refused


# --- the app, headless ------------------------------------------------------------------------


async def until(pilot: Pilot[None], condition: Callable[[], object], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the app never got there"
        await pilot.pause(0.05)


def text_of(widget: Static) -> str:
    return str(widget.visual)


async def test_the_app_shows_typing_and_answers_with_choose(town: Town) -> None:
    shop = await town.business()
    customer = await town.person("ana")
    shop.start()
    question = await customer.send_text(shop.phone or "", "Can I change the delivery day?")
    app = ChatApp(customer)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.model.connected)
        await pilot.press(*f"/new {shop.phone}", "enter")
        title = app.query_one("#chat-title", Static)
        await until(pilot, lambda: "Tresen Versand" in text_of(title))

        await shop.typing(customer.phone or "", question.message_id)
        await until(pilot, lambda: text_of(title).endswith(" · typing…"))
        await shop.send_interactive(customer.phone or "", YES_NO)
        await until(pilot, lambda: "typing" not in text_of(title))
        await until(
            pilot, lambda: any("[2] No, keep it" in text_of(v) for v in app.query(LineView))
        )

        await pilot.press(*"/choose 1", "enter")
        await until(pilot, lambda: text_of(list(app.query(LineView))[-1]).startswith("↩ Yes"))
        answer = await next_of(shop, MessageEvent)
        while answer.message_id != app.model.lines(shop.account_id or "")[-1].message_id:
            answer = await next_of(shop, MessageEvent)  # the question came first
        assert isinstance(answer.payload, InteractiveReply)
        assert (answer.payload.id, answer.payload.title) == ("yes", "Yes")
