"""Sending through ``POST /{phone_number_id}/messages`` beyond plain text: reactions, quoted
replies, lists, addressing by user id or by a formatted number, callback data echoed in the
statuses, read marks with the typing indicator, and the errors a Cloud API client sees for
what the gateway cannot or must not do."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway_support import (
    RunningGateway,
    approved_template,
    customer,
    next_of,
    serve_gateway,
    subscribed_inbox,
)
from support import Backend, MakeRelay, RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent, StatusChanged, TypingStarted
from tresen.client.store import MessageStatus
from tresen.core.clock import ManualClock
from tresen.gateway.ids import decode_wamid, encode_wamid
from tresen.wire.e2e import Interactive, InteractiveKind, Reaction, Text


def error_of(r: Any) -> dict[str, Any]:
    body = r.json()
    assert "error" in body, body
    error: dict[str, Any] = body["error"]
    assert error["type"] == "OAuthException"
    assert error["message"].startswith(f"(#{error['code']})")
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["fbtrace_id"]
    return error


def spaced(phone: str) -> str:
    """``+4915112340001`` as people write it: ``+49 151 1234 0001``."""
    digits = phone.lstrip("+")
    return f"+{digits[:2]} {digits[2:5]} {digits[5:9]} {digits[9:]}"


async def open_chat(relay: RunningRelay, gw: RunningGateway, tmp_path: Path) -> Client:
    """A customer who wrote to the business (its window is open)."""
    alice = await customer(relay, tmp_path / "alice")
    await alice.send_text(gw.gateway.phone, "Hello, a question about my order")
    return alice


async def sent_to(gw: RunningGateway, who: Client, body: dict[str, Any]) -> tuple[str, Any]:
    r = await gw.send({"to": who.phone, **body})
    assert r.status_code == 200, r.text
    wamid = r.json()["messages"][0]["id"]
    event = await next_of(who, MessageEvent)
    assert event.message_id == decode_wamid(wamid)
    return wamid, event


async def test_reactions_and_their_removal_reach_the_customer(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            question = (await inbox.next_message("text"))["messages"][0]["id"]
            r = await gw.send(
                {
                    "to": alice.phone,
                    "type": "reaction",
                    "reaction": {"message_id": question, "emoji": "❤️"},
                }
            )
            assert r.status_code == 200, r.text
            assert r.json()["messages"][0]["id"].startswith("wamid.")
            event = await next_of(alice, MessageEvent)
            assert event.payload == Reaction(message_id=decode_wamid(question), emoji="❤️")

            r = await gw.send(
                {
                    "to": alice.phone,
                    "type": "reaction",
                    "reaction": {"message_id": question, "emoji": ""},
                }
            )
            assert r.status_code == 200, r.text
            event = await next_of(alice, MessageEvent)
            assert event.payload == Reaction(message_id=decode_wamid(question), emoji="")
        finally:
            await alice.close()


async def test_a_reply_quotes_the_customer_message(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            question = (await inbox.next_message("text"))["messages"][0]["id"]
            _, event = await sent_to(
                gw,
                alice,
                {
                    "context": {"message_id": question},
                    "type": "text",
                    "text": {"body": "It ships today."},
                },
            )
            assert isinstance(event.payload, Text)
            assert event.payload.text == "It ships today."
            assert event.payload.context is not None
            assert event.payload.context.message_id == decode_wamid(question)

            # Interactive messages quote too.
            _, event = await sent_to(
                gw,
                alice,
                {
                    "context": {"message_id": question},
                    "type": "interactive",
                    "interactive": {
                        "type": "button",
                        "body": {"text": "Shall we hurry?"},
                        "action": {
                            "buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]
                        },
                    },
                },
            )
            assert isinstance(event.payload, Interactive)
            assert event.payload.context is not None
            assert event.payload.context.message_id == decode_wamid(question)
        finally:
            await alice.close()


async def test_a_list_message_arrives_with_its_sections(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await open_chat(relay, gw, tmp_path)
    try:
        _, event = await sent_to(
            gw,
            alice,
            {
                "type": "interactive",
                "interactive": {
                    "type": "list",
                    "header": {"type": "text", "text": "Returns"},
                    "body": {"text": "Why are you sending it back?"},
                    "footer": {"text": "Free within 30 days"},
                    "action": {
                        "button": "Reasons",
                        "sections": [
                            {
                                "title": "Product",
                                "rows": [
                                    {"id": "size", "title": "Wrong size"},
                                    {
                                        "id": "broken",
                                        "title": "Arrived broken",
                                        "description": "We send a new one",
                                    },
                                ],
                            },
                            {"title": "Other", "rows": [{"id": "other", "title": "Other"}]},
                        ],
                    },
                },
            },
        )
        payload = event.payload
        assert isinstance(payload, Interactive)
        assert payload.type is InteractiveKind.LIST
        assert (payload.header, payload.body, payload.footer, payload.button) == (
            "Returns",
            "Why are you sending it back?",
            "Free within 30 days",
            "Reasons",
        )
        assert [s.title for s in payload.sections] == ["Product", "Other"]
        rows = [(r.id, r.title, r.description) for s in payload.sections for r in s.rows]
        assert rows == [
            ("size", "Wrong size", None),
            ("broken", "Arrived broken", "We send a new one"),
            ("other", "Other", None),
        ]
    finally:
        await alice.close()


async def test_recipient_by_user_id_and_to_as_people_write_numbers(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            assert alice.phone is not None
            user_id = (await inbox.next_message("text"))["contacts"][0]["user_id"]
            r = await gw.send(
                {"recipient": user_id, "type": "text", "text": {"body": "By user id"}}
            )
            assert r.status_code == 200, r.text
            [contact] = r.json()["contacts"]
            assert contact["input"] == user_id
            assert contact["user_id"] == user_id
            event = await next_of(alice, MessageEvent)
            assert isinstance(event.payload, Text)
            assert event.payload.text == "By user id"

            written = spaced(alice.phone)
            r = await gw.send({"to": written, "type": "text", "text": {"body": "By number"}})
            assert r.status_code == 200, r.text
            [contact] = r.json()["contacts"]
            assert contact == {
                "input": written,
                "wa_id": alice.phone.lstrip("+"),
                "user_id": user_id,
            }
            event = await next_of(alice, MessageEvent)
            assert isinstance(event.payload, Text)
            assert event.payload.text == "By number"

            # A user id of nobody who wrote to this business cannot be addressed.
            r = await gw.send(
                {"recipient": "DE.12345678901234567890", "type": "text", "text": {"body": "?"}}
            )
            assert r.status_code == 400
            assert error_of(r)["code"] == 131026
        finally:
            await alice.close()


async def test_callback_data_is_echoed_in_every_status(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            wamid, event = await sent_to(
                gw,
                alice,
                {
                    "type": "text",
                    "text": {"body": "Your refund is on its way."},
                    "biz_opaque_callback_data": "ticket=981;agent=jo",
                },
            )
            for status in ("sent", "delivered"):
                [entry] = (await inbox.next_status(wamid, status))["statuses"]
                assert entry["biz_opaque_callback_data"] == "ticket=981;agent=jo"
            await alice.mark_read(gw.gateway.phone, [event.message_id])
            [entry] = (await inbox.next_status(wamid, "read"))["statuses"]
            assert entry["biz_opaque_callback_data"] == "ticket=981;agent=jo"

            # Without it, statuses carry none.
            plain, _ = await sent_to(
                gw, alice, {"type": "text", "text": {"body": "Anything else?"}}
            )
            [entry] = (await inbox.next_status(plain, "sent"))["statuses"]
            assert "biz_opaque_callback_data" not in entry

            r = await gw.send(
                {
                    "to": alice.phone,
                    "type": "text",
                    "text": {"body": "x"},
                    "biz_opaque_callback_data": "x" * 513,
                }
            )
            assert error_of(r)["code"] == 100
            assert "biz_opaque_callback_data" in error_of(r)["error_data"]["details"]
        finally:
            await alice.close()


async def test_read_with_typing_indicator_reads_earlier_messages_and_shows_typing(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await customer(relay, tmp_path / "alice")
        try:
            first = await alice.send_text(gw.gateway.phone, "Hello?")
            second = await alice.send_text(gw.gateway.phone, "Anyone there?")
            await inbox.next_message("text")
            latest = (await inbox.next_message("text"))["messages"][0]
            assert latest["text"]["body"] == "Anyone there?"
            r = await gw.send(
                {"status": "read", "message_id": latest["id"], "typing_indicator": {"type": "text"}}
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"success": True}

            read: set[str] = set()
            typing: TypingStarted | None = None
            while typing is None or read != {first.message_id, second.message_id}:
                event = await next_of(alice, StatusChanged | TypingStarted)
                if isinstance(event, TypingStarted):
                    typing = event
                elif event.status is MessageStatus.READ:
                    read.add(event.message_id)
            assert typing.chat == gw.gateway.account_id
            assert typing.message_id == second.message_id

            # Only received messages can be marked read.
            outgoing = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Hi"}})
            r = await gw.send(
                {"status": "read", "message_id": outgoing.json()["messages"][0]["id"]}
            )
            assert error_of(r)["code"] == 100
            never = encode_wamid(secrets.token_hex(16))
            r = await gw.send({"status": "read", "message_id": never})
            assert error_of(r)["code"] == 100
            r = await gw.send(
                {"status": "read", "message_id": latest["id"], "typing_indicator": {"type": "x"}}
            )
            assert "typing_indicator" in error_of(r)["error_data"]["details"]
        finally:
            await alice.close()


async def test_other_types_are_not_supported_yet(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    """Media messages are (tests/gateway/test_media.py); locations, contacts and interactive
    messages with a media header are not yet."""
    alice = await open_chat(relay, gw, tmp_path)
    try:
        bodies: list[dict[str, Any]] = [
            {"type": "location", "location": {"latitude": 52.5, "longitude": 13.4}},
            {"type": "contacts", "contacts": [{"name": {"formatted_name": "Jo"}}]},
        ]
        for body in bodies:
            r = await gw.send({"to": alice.phone, **body})
            assert r.status_code == 400, (body, r.text)
            assert error_of(r)["code"] == 131051, body
    finally:
        await alice.close()


async def test_context_outside_the_conversation_is_100(
    relay: RunningRelay, backend: Backend, gw: RunningGateway, tmp_path: Path
) -> None:
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    alice = await customer(relay, tmp_path / "alice")
    bob = await customer(relay, tmp_path / "bob")
    try:
        async with subscribed_inbox(gw) as inbox:
            await alice.send_text(gw.gateway.phone, "Hello")
            own = (await inbox.next_message("text"))["messages"][0]["id"]
            await bob.send_text(gw.gateway.phone, "Hello from Bob")
            bobs = (await inbox.next_message("text"))["messages"][0]["id"]
        async with (
            serve_gateway(relay, backend, other_folder, display_name="Bakery Krause") as other,
            subscribed_inbox(other) as inbox,
        ):
            await alice.send_text(other.gateway.phone, "Hello other shop")
            foreign = (await inbox.next_message("text"))["messages"][0]["id"]
        # A message of another business, and one of another customer's chat.
        for wamid in (foreign, bobs):
            for body in (
                {"context": {"message_id": wamid}, "type": "text", "text": {"body": "Re"}},
                {"type": "reaction", "reaction": {"message_id": wamid, "emoji": "👍"}},
            ):
                r = await gw.send({"to": alice.phone, **body})
                assert r.status_code == 400, (body, r.text)
                error = error_of(r)
                assert error["code"] == 100, error
                assert "message_id" in error["error_data"]["details"]
        # Her own message, by number or by user id, is fine.
        r = await gw.send(
            {"to": alice.phone, "context": {"message_id": own}, "text": {"body": "Re"}}
        )
        assert r.status_code == 200, r.text
        user_id = r.json()["contacts"][0]["user_id"]
        r = await gw.send(
            {
                "recipient": user_id,
                "type": "reaction",
                "reaction": {"message_id": own, "emoji": "👍"},
            }
        )
        assert r.status_code == 200, r.text
    finally:
        await alice.close()
        await bob.close()


async def test_numbers_off_the_network_and_its_own_number(gw: RunningGateway) -> None:
    nobody = f"+4930{secrets.randbelow(10**8):08d}"
    r = await gw.send({"to": nobody, "type": "text", "text": {"body": "Hello?"}})
    assert r.status_code == 400
    assert error_of(r)["code"] == 131026

    r = await gw.send({"to": gw.gateway.phone, "type": "text", "text": {"body": "Me?"}})
    assert r.status_code == 400
    assert error_of(r)["code"] == 131021

    r = await gw.send({"to": "call me maybe", "type": "text", "text": {"body": "?"}})
    assert error_of(r)["code"] == 100
    assert "to" in error_of(r)["error_data"]["details"]


async def test_a_body_over_the_limit_is_413(gw: RunningGateway) -> None:
    limit = gw.settings.api.max_request_bytes
    body = {"to": "+4915100000000", "type": "text", "text": {"body": "x" * (limit + 10)}}
    r = await gw.send(body)
    assert r.status_code == 413
    assert error_of(r)["code"] == 100
    assert str(limit) in error_of(r)["error_data"]["details"]

    # Also without a Content-Length, as a stream.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"messaging_product":"whatsapp","to":"+4915100000000","text":{"body":"'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}}'

    r = await gw.http.post(
        f"/{gw.phone_number_id}/messages",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert error_of(r)["code"] == 100


async def test_each_token_has_its_own_request_rate(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    async with serve_gateway(
        relay, backend, tmp_path, api={"requests_per_second": 1, "request_burst": 2}
    ) as gw:
        path = f"/{gw.waba_id}/subscribed_apps"
        for _ in range(2):
            r = await gw.http.get(path)
            assert r.status_code == 200, r.text
        r = await gw.http.get(path)
        assert r.status_code == 429
        error = error_of(r)
        assert error["code"] == 4
        assert 0 < error["error_data"]["retry_after_ms"] <= 1000

        _, other = await gw.gateway.store.create_token("another integration")
        r = await gw.http.get(path, headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 200, r.text


async def test_currency_and_date_time_parameters_show_their_fallback(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    await approved_template(relay, gw)
    alice = await customer(relay, tmp_path / "alice")
    try:
        await alice.opt_in(gw.gateway.phone)
        r = await gw.send(
            {
                "to": alice.phone,
                "type": "template",
                "template": {
                    "name": "order_shipped",
                    "language": {"code": "en_US"},
                    "components": [
                        {"type": "header", "parameters": [{"type": "text", "text": "#4711"}]},
                        {
                            "type": "body",
                            "parameters": [
                                {"type": "text", "text": "Alice"},
                                {
                                    "type": "date_time",
                                    "date_time": {"fallback_value": "February 25, 1977"},
                                },
                            ],
                        },
                        {
                            "type": "button",
                            "sub_type": "url",
                            "index": "0",
                            "parameters": [{"type": "text", "text": "4711"}],
                        },
                    ],
                },
            }
        )
        assert r.status_code == 200, r.text
        event = await next_of(alice, MessageEvent)
        assert event.template is not None
        assert "your order ships on February 25, 1977." in event.template.body
    finally:
        await alice.close()


async def test_a_number_off_the_network_is_131026_every_time(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> None:
    """Retrying a number nobody registered keeps its answer: the gateway remembers it for a
    while instead of spending its lookup budget at the relay until sends turn into the
    token's rate limit (code 4)."""
    clock = ManualClock()
    async with (
        make_relay(clock=clock, limits={"lookup_burst": 3, "lookups_per_hour": 60}) as relay,
        serve_gateway(relay, backend, tmp_path, clock=clock) as gw,
    ):
        nobody = relay.next_phone()
        for _ in range(20):
            r = await gw.send({"to": nobody, "type": "text", "text": {"body": "Hello?"}})
            assert r.status_code == 400
            assert error_of(r)["code"] == 131026

        # New numbers each time spend the budget; then a throughput limit, not code 4.
        codes = []
        for _ in range(3):
            r = await gw.send({"to": relay.next_phone(), "type": "text", "text": {"body": "?"}})
            codes.append(error_of(r)["code"])
        assert codes == [131026, 131026, 130429]
        r = await gw.send({"to": nobody, "type": "text", "text": {"body": "Still there?"}})
        assert error_of(r)["code"] == 131026

        # The number registers and writes (two minutes on, well within the gateway's memory
        # of it, the budget has room to look the writer up): it is reachable at once.
        late = await customer(relay, tmp_path / "late", phone=nobody)
        try:
            clock.advance(minutes=2)
            async with subscribed_inbox(gw) as inbox:
                await late.send_text(gw.gateway.phone, "I am here now")
                await inbox.next_message("text")
            r = await gw.send({"to": nobody, "type": "text", "text": {"body": "Welcome"}})
            assert r.status_code == 200, r.text
            event = await next_of(late, MessageEvent)
            assert isinstance(event.payload, Text)
            assert event.payload.text == "Welcome"
        finally:
            await late.close()


async def test_a_read_without_a_delivered_before_it_still_carries_the_pricing(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        token = alice.api.token
        assert token is not None
        await alice.close()  # offline: the reply waits in her mailbox, never acked

        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "On Friday."}})
        assert r.status_code == 200, r.text
        wamid = r.json()["messages"][0]["id"]
        [sent] = (await inbox.next_status(wamid, "sent"))["statuses"]
        assert "pricing" not in sent

        # A device that marks a message read before acknowledging it: the Cloud API allows a
        # read without a delivered before it, and the read still says how it is priced.
        reader = await relay.ctx.accounts.authenticate(token)
        assert await relay.ctx.mailbox.read(reader, [decode_wamid(wamid)]) == 1
        [read] = (await inbox.next_status(wamid, "read"))["statuses"]
        assert read["pricing"] == {
            "billable": False,
            "pricing_model": "PMP",
            "type": "free_customer_service",
            "category": "service",
        }
