"""The platform rules in the terminal app, against a relay with a controllable clock: the
consent dashboard with /revoke, /optin and /optout, STOP confirmed in the chat, /block,
/unblock and /report, the rules' refusals as sentences, and template messages shown as their
operator-signed template renders them (or why not)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from support import ORDER_SHIPPED, RunningRelay, read_last_code

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.app import ChatModel, LineKind
from tresen.client.events import ConsentChanged, DecryptionFailed, MessageEvent
from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.relay.schema import quality_events
from tresen.wire import relay as wire
from tresen.wire.e2e import Template

NOW = 1_767_225_600_000 + 9 * 3_600_000  # Thursday 2026-01-01, 10:00 in Berlin
SHIPPED = ["Order #4711", "Hi Anna, your order ships on Monday.", "Reply STOP to opt out"]
TRACK = "[Track] https://shop.example/o/4711"

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

    async def business(self, name: str, display_name: str) -> Client:
        business = await self.person(name)
        await business.save_business_profile(display_name=display_name, category="TRAVEL")
        return business

    async def approved(self, business: Client, template: dict[str, Any]) -> str:
        created = await business.api.submit_template(template)
        r = await self.relay.http.post(
            f"/v1/admin/templates/{created['id']}/approve", headers=self.ops
        )
        assert r.status_code == 200, r.text
        return str(created["id"])


@pytest.fixture
async def town(make_relay: Any, tmp_path: Path) -> AsyncIterator[Town]:
    clock = ManualClock(NOW)
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


def shown(model: ChatModel, account_id: str | None, *kinds: LineKind) -> list[str]:
    return [line.text for line in model.lines(account_id or "") if line.kind in kinds]


# --- consent ---------------------------------------------------------------------------------


async def test_the_consent_dashboard_lists_businesses_and_revoke_withdraws_everything(
    town: Town,
) -> None:
    airline = await town.business("airline", "Tresen Air")
    bakery = await town.business("bakery", "Bäckerei Brot")
    customer = await town.person("customer")
    assert customer.phone is not None
    model = ChatModel(customer)

    await model.submit("/consents")
    assert model.feedback.startswith("No business has your consent on record")
    await model.submit("/optin")
    assert model.feedback == "Open a business chat first; /optin is about that business."

    await model.submit(f"/new {airline.phone}")
    await model.submit("/optin")
    town.clock.advance(minutes=1)
    await model.submit("/optout marketing")
    await model.submit("/optin offers")
    assert model.feedback.startswith("Which messages? /optin marketing (offers)")
    assert shown(model, airline.account_id, LineKind.NOTICE) == [
        "You agreed to all messages (order updates, codes and offers) from Tresen Air. "
        "/optout withdraws it.",
        "You withdrew your consent to marketing messages (offers) from Tresen Air.",
    ]
    await bakery.attest_consent(customer.phone, "order form, checkbox", NOW - 60_000)

    await model.submit("/consents")
    assert model.feedback.splitlines() == [
        "Businesses that may send you templates (on: may send, off: may not):",
        "1. Bäckerei Brot · utility on (Bäckerei Brot says: order form, checkbox)",
        "2. Tresen Air · utility on (you agreed) · marketing off (you withdrew)",
        "/revoke 1 withdraws all consent from a business · in its chat: /optin or /optout "
        "marketing|utility",
    ]

    # One action per business: by its number on the list, or in its open chat.
    town.clock.advance(minutes=1)
    await model.submit("/revoke 1")
    assert model.feedback.startswith("You withdrew all consent from Bäckerei Brot: no more")
    await model.submit("/revoke")
    assert shown(model, airline.account_id, LineKind.NOTICE)[-1].startswith(
        "You withdrew all consent from Tresen Air"
    )
    await model.submit("/consents")
    assert model.feedback.splitlines()[1:3] == [
        "1. Bäckerei Brot · utility off (you withdrew) · marketing off (you withdrew)",
        "2. Tresen Air · utility off (you withdrew) · marketing off (you withdrew)",
    ]
    await model.submit("/revoke 3")
    assert model.feedback == "There is no number 3 on your /consents list."


async def test_stop_typed_to_a_business_is_confirmed_in_its_chat(town: Town) -> None:
    airline = await town.business("airline", "Tresen Air")
    customer = await town.person("customer")
    model = ChatModel(customer)
    await model.submit(f"/new {airline.phone}")
    await model.submit("/optin")

    await model.submit("STOP")
    changed = await feed_until(customer, model, ConsentChanged)

    assert changed.failed is None
    lines = model.lines(airline.account_id or "")
    assert [(line.kind, line.text) for line in lines[-2:]] == [
        (LineKind.MESSAGE, "STOP"),
        (
            LineKind.NOTICE,
            "You will no longer receive marketing messages from Tresen Air. "
            "Send START to receive them again.",
        ),
    ]
    [line] = await customer.consents()
    assert (line.state("utility"), line.state("marketing")) == ("opted_in", "opted_out")


# --- blocks, reports and the rules' refusals -------------------------------------------------


async def test_block_unblock_and_report_the_open_chat(town: Town) -> None:
    airline = await town.business("airline", "Tresen Air")
    customer = await town.person("customer")
    assert customer.phone is not None
    model = ChatModel(customer)
    await model.submit("/block")
    assert model.feedback == "Open a chat first; /block blocks that chat."
    await model.submit(f"/new {airline.phone}")
    await model.submit("When do I board?")
    await airline.send_text(customer.phone, "Boarding at 09:40")
    customer.start()
    boarding = await feed_until(customer, model, MessageEvent)

    await model.submit("/block")
    [row] = model.chat_rows()
    assert row.blocked
    assert model.heading(row.account_id).endswith(" · blocked (/unblock)")
    assert shown(model, airline.account_id, LineKind.NOTICE) == [
        "You blocked Tresen Air: its messages no longer reach you and you cannot write to it "
        "(it is not told). /unblock undoes this."
    ]
    await model.submit("/block")
    assert model.feedback == "Tresen Air is blocked already; /unblock undoes it."
    # The business learns nothing but that the number cannot be reached.
    with pytest.raises(RelayError) as refused:
        await airline.send_text(customer.phone, "Special offer!")
    assert refused.value.code == ErrorCode.UNDELIVERABLE
    await model.submit("hello?")
    assert shown(model, airline.account_id, LineKind.ERROR) == [
        "Not sent: “hello?”: you blocked Tresen Air; type /unblock to write again."
    ]

    await model.submit("/unblock")
    assert not model.chat_rows()[0].blocked
    assert shown(model, airline.account_id, LineKind.NOTICE)[-1] == (
        "You unblocked Tresen Air: you can write again."
    )
    await model.submit("sorry, wrong button")
    assert shown(model, airline.account_id, LineKind.ERROR) == [
        "Not sent: “hello?”: you blocked Tresen Air; type /unblock to write again."
    ]

    await model.submit("/report")
    assert model.feedback == (
        "Report Tresen Air for: spam, offensive, scam, unwanted, other; add “block” to block "
        "it too, e.g. /report spam block"
    )
    await model.submit("/report rude")
    assert model.feedback.startswith("“rude” is not a reason. Report Tresen Air for: spam")
    await model.submit("/report spam block")
    assert shown(model, airline.account_id, LineKind.NOTICE)[-1] == (
        "You reported Tresen Air to your operator (spam). Tresen Air is blocked too; /unblock "
        "undoes that."
    )
    assert model.chat_rows()[0].blocked
    assert await customer.blocked() == [airline.account_id]
    standing = await airline.quality()
    # The customer received the airline's message: one of the block and the report lowers the
    # rating (the customer counts once per quality period), the other is kept.
    assert (standing["blocks"] + standing["reports"], standing["uncounted"]) == (1, 1)
    # The report names the last message the customer got, so the operator knows which one.
    async with town.relay.ctx.db.read() as conn:
        reported = (
            await conn.execute(
                select(quality_events.c.message_id).where(quality_events.c.kind == "report")
            )
        ).scalar_one()
    assert reported == boarding.message_id


async def test_the_rules_refusals_read_as_sentences(town: Town) -> None:
    airline = await town.business("airline", "Tresen Air")
    customer = await town.person("customer")
    assert customer.phone is not None
    await customer.send_text(airline.phone or "", "Is my flight on time?")
    desk = ChatModel(airline)  # the business's own app, answering
    await desk.submit(f"/new {customer.phone}")
    await desk.submit("Yes, on time.")

    town.clock.advance(hours=24)
    await desk.submit("Anything else?")
    assert shown(desk, customer.account_id, LineKind.ERROR) == [
        f"Not sent: “Anything else?”: more than 24 hours have passed since {customer.phone} "
        "last wrote to you; only an approved template can reach them now."
    ]


# --- template messages -----------------------------------------------------------------------


async def test_template_messages_show_their_rendering_or_why_they_were_refused(
    town: Town,
) -> None:
    shop = await town.business("shop", "Bäckerei Brot")
    template_id = await town.approved(shop, ORDER_SHIPPED)
    customer = await town.person("customer")
    assert customer.phone is not None
    await customer.opt_in(shop.phone or "", ["utility"])
    model = ChatModel(customer)
    customer.start()

    parameters = {"header": ["#4711"], "body": ["Anna", "Monday"], "button:0": ["4711"]}
    sent = await shop.send_template(customer.phone, template_id, "en_US", parameters)
    await feed_until(customer, model, MessageEvent)
    [line] = model.lines(shop.account_id or "")
    assert (line.kind, line.marker, line.message_id) == (
        LineKind.MESSAGE,
        "template · utility",
        sent.message_id,
    )
    assert line.text.splitlines() == [*SHIPPED, TRACK]

    # After a restart the stored message is rendered again from the kept signed template.
    again = ChatModel(customer)
    assert again.lines(shop.account_id or "")[0].text == "[template order_shipped]"
    await again.start()
    assert again.lines(shop.account_id or "")[0].text.splitlines() == [*SHIPPED, TRACK]

    # Parameters that do not fit the signed template: refused, reported, never shown.
    forged = Template(
        template_id=template_id,
        name="order_shipped",
        language="en_US",
        parameters={"header": ["#4711"], "body": ["Your account is locked, call +1 555"]},
    )
    await shop.send(
        customer.phone, forged, klass=wire.MessageClass.TEMPLATE, template_ref=template_id
    )
    await feed_until(customer, model, DecryptionFailed)
    refused = shown(model, shop.account_id, LineKind.FAILED)
    assert len(refused) == 1
    assert refused[0].startswith(
        "⚠ A template message from Bäckerei Brot does not match the template your operator "
        "approved (the parameters do not fit (132000): "
    )
    assert refused[0].endswith("; it was reported to your operator")
    assert "locked" not in refused[0]
