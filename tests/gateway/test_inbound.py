"""What a customer does reaches the business's webhook endpoint in the Cloud API's shapes:
replies quoting the business's messages, reactions, list and button answers, quick-reply taps
on templates, and messages the Cloud API cannot show. Every POST is checked by the inbox:
signed with the app secret, one entry with one change, one message or status in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway_support import (
    RunningGateway,
    customer,
    next_of,
    subscribed_inbox,
)
from support import RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.gateway.ids import decode_wamid
from tresen.relay.operator.service import OperatorPrincipal
from tresen.wire.e2e import Button, Interactive, InteractiveKind

# A template a customer answers with a tap: two QUICK_REPLY buttons.
DELIVERY_FEEDBACK: dict[str, Any] = {
    "name": "delivery_feedback",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "BODY",
            "text": "Did order {{1}} arrive on time?",
            "example": {"body_text": [["#1"]]},
        },
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Yes, on time"},
                {"type": "QUICK_REPLY", "text": "No, it was late"},
            ],
        },
    ],
}


def assert_about(value: dict[str, Any], who: Client, gw: RunningGateway) -> dict[str, Any]:
    """The contact and metadata of a ``messages`` webhook about ``who``; its contact."""
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == {
        "display_phone_number": gw.phone_number_id,
        "phone_number_id": gw.phone_number_id,
    }
    [contact] = value["contacts"]
    assert who.phone is not None
    assert contact["wa_id"] == who.phone.lstrip("+")
    assert contact["user_id"].startswith("DE.")
    assert contact["profile"]["name"]
    return dict(contact)


async def open_chat(relay: RunningRelay, gw: RunningGateway, tmp_path: Path) -> Client:
    """A customer who wrote to the business (its window is open)."""
    alice = await customer(relay, tmp_path / "alice")
    await alice.send_text(gw.gateway.phone, "Hello, a question about my order")
    return alice


async def business_says(gw: RunningGateway, to: Client, body: dict[str, Any]) -> tuple[str, Any]:
    """Send ``body`` to ``to`` through the Cloud API; the wamid and what ``to`` received."""
    r = await gw.send({"to": to.phone, **body})
    assert r.status_code == 200, r.text
    wamid = r.json()["messages"][0]["id"]
    event = await next_of(to, MessageEvent)
    assert event.message_id == decode_wamid(wamid)
    return wamid, event


async def test_a_reply_quotes_the_business_message_by_its_wamid(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            first = await inbox.next_message("text")
            contact = assert_about(first, alice, gw)
            [message] = first["messages"]
            assert message["from"] == contact["wa_id"]
            assert message["from_user_id"] == contact["user_id"]
            assert message["id"].startswith("wamid.")
            assert message["timestamp"].isdigit()
            assert message["text"] == {"body": "Hello, a question about my order"}
            assert "context" not in message

            wamid, event = await business_says(
                gw, alice, {"type": "text", "text": {"body": "Which order number?"}}
            )
            await alice.send_text(gw.gateway.phone, "It is #4711", reply_to=event.message_id)
            reply = await inbox.next_message("text")
            assert_about(reply, alice, gw)
            [message] = reply["messages"]
            assert message["text"] == {"body": "It is #4711"}
            assert message["context"] == {"from": gw.phone_number_id, "id": wamid}
            assert message["id"] != first["messages"][0]["id"]
        finally:
            await alice.close()


async def test_statuses_carry_the_contact_too(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            contact = assert_about(await inbox.next_message(), alice, gw)
            wamid, event = await business_says(
                gw, alice, {"type": "text", "text": {"body": "Let me check."}}
            )
            sent = await inbox.next_status(wamid, "sent")
            assert assert_about(sent, alice, gw) == contact
            assert "pricing" not in sent["statuses"][0]  # priced on delivery, not before
            delivered = await inbox.next_status(wamid, "delivered")
            assert assert_about(delivered, alice, gw) == contact
            [status] = delivered["statuses"]
            assert status["recipient_id"] == contact["wa_id"]
            assert status["recipient_user_id"] == contact["user_id"]
            assert status["timestamp"].isdigit()
            assert status["pricing"] == {
                "billable": False,
                "pricing_model": "PMP",
                "type": "free_customer_service",
                "category": "service",
            }
            await alice.mark_read(gw.gateway.phone, [event.message_id])
            read = await inbox.next_status(wamid, "read")
            assert assert_about(read, alice, gw) == contact
            # The read status repeats the pricing of the delivery (pywa's MessageStatus
            # .pricing is there on both), and the Cloud API's conversation is omitted.
            assert read["statuses"][0]["pricing"] == status["pricing"]
            assert "conversation" not in read["statuses"][0]
        finally:
            await alice.close()


async def test_a_reaction_and_its_removal_name_the_wamid(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            wamid, event = await business_says(
                gw, alice, {"type": "text", "text": {"body": "Your parcel left Berlin."}}
            )
            await alice.react(gw.gateway.phone, event.message_id, "👍")
            value = await inbox.next_message("reaction")
            assert_about(value, alice, gw)
            [message] = value["messages"]
            assert message["reaction"] == {"message_id": wamid, "emoji": "👍"}

            await alice.react(gw.gateway.phone, event.message_id, "")
            [removed] = (await inbox.next_message("reaction"))["messages"]
            assert removed["reaction"] == {"message_id": wamid}  # no emoji: taken back
            assert removed["id"] != message["id"]
        finally:
            await alice.close()


async def test_list_and_button_answers_are_interactive_replies_with_context(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            list_wamid, event = await business_says(
                gw,
                alice,
                {
                    "type": "interactive",
                    "interactive": {
                        "type": "list",
                        "body": {"text": "When shall we deliver?"},
                        "action": {
                            "button": "Slots",
                            "sections": [
                                {
                                    "title": "Monday",
                                    "rows": [
                                        {"id": "mon-am", "title": "Morning", "description": "8-12"},
                                        {"id": "mon-pm", "title": "Afternoon"},
                                    ],
                                },
                                {"title": "Tuesday", "rows": [{"id": "tue", "title": "All day"}]},
                            ],
                        },
                    },
                },
            )
            await alice.answer(gw.gateway.phone, event.message_id, "mon-am")
            value = await inbox.next_message("interactive")
            assert_about(value, alice, gw)
            [message] = value["messages"]
            assert message["interactive"] == {
                "type": "list_reply",
                "list_reply": {"id": "mon-am", "title": "Morning", "description": "8-12"},
            }
            assert message["context"] == {"from": gw.phone_number_id, "id": list_wamid}

            buttons_wamid, event = await business_says(
                gw,
                alice,
                {
                    "type": "interactive",
                    "interactive": {
                        "type": "button",
                        "body": {"text": "Leave it with a neighbour?"},
                        "action": {
                            "buttons": [
                                {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                                {"type": "reply", "reply": {"id": "no", "title": "No"}},
                            ]
                        },
                    },
                },
            )
            await alice.answer(gw.gateway.phone, event.message_id, "no")
            [message] = (await inbox.next_message("interactive"))["messages"]
            assert message["interactive"] == {
                "type": "button_reply",
                "button_reply": {"id": "no", "title": "No"},
            }
            assert message["context"] == {"from": gw.phone_number_id, "id": buttons_wamid}
        finally:
            await alice.close()


async def test_a_quick_reply_tap_on_a_template_is_a_button_message(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    r = await gw.http.post(f"/{gw.waba_id}/message_templates", json=DELIVERY_FEEDBACK)
    assert r.status_code == 200, r.text
    await relay.ctx.templates.approve(OperatorPrincipal("tests"), int(r.json()["id"]))
    alice = await customer(relay, tmp_path / "alice")
    try:
        await alice.opt_in(gw.gateway.phone)
        async with subscribed_inbox(gw) as inbox:
            template = {
                "type": "template",
                "template": {
                    "name": "delivery_feedback",
                    "language": {"code": "en_US"},
                    "components": [
                        {"type": "body", "parameters": [{"type": "text", "text": "#4711"}]},
                        {
                            "type": "button",
                            "sub_type": "quick_reply",
                            "index": "0",
                            "parameters": [{"type": "payload", "payload": "feedback:4711:yes"}],
                        },
                    ],
                },
            }
            wamid, event = await business_says(gw, alice, template)
            assert event.template is not None
            [delivered] = (await inbox.next_status(wamid, "delivered"))["statuses"]
            assert delivered["pricing"] == {
                "billable": True,
                "pricing_model": "PMP",
                "type": "regular",
                "category": "utility",
            }
            await alice.tap_quick_reply(gw.gateway.phone, event.message_id, 0)
            value = await inbox.next_message("button")
            assert_about(value, alice, gw)
            [message] = value["messages"]
            assert message["button"] == {"payload": "feedback:4711:yes", "text": "Yes, on time"}
            assert message["context"] == {"from": gw.phone_number_id, "id": wamid}

            # A button the business set no payload for answers with its text.
            await alice.tap_quick_reply(gw.gateway.phone, event.message_id, 1)
            [message] = (await inbox.next_message("button"))["messages"]
            assert message["button"] == {"payload": "No, it was late", "text": "No, it was late"}
            assert message["context"] == {"from": gw.phone_number_id, "id": wamid}
    finally:
        await alice.close()


async def test_what_the_cloud_api_cannot_show_is_unsupported_131051(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await open_chat(relay, gw, tmp_path)
        try:
            await inbox.next_message("text")
            # Customers do not send buttons in the Cloud API; the business learns that
            # something arrived, and from whom.
            await alice.send_interactive(
                gw.gateway.phone,
                Interactive(
                    type=InteractiveKind.BUTTON,
                    body="Pick one",
                    buttons=[Button(id="a", title="A")],
                ),
            )
            value = await inbox.next_message("unsupported")
            assert_about(value, alice, gw)
            [message] = value["messages"]
            [error] = message["errors"]
            assert error["code"] == 131051
            assert error["title"]
            assert error["error_data"]["details"]
            assert "interactive" not in message
        finally:
            await alice.close()


async def test_one_conversation_arrives_in_order(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await customer(relay, tmp_path / "alice")
        try:
            texts = [f"message {i}" for i in range(6)]
            for text in texts:
                await alice.send_text(gw.gateway.phone, text)
            received = [
                (await inbox.next_message("text"))["messages"][0]["text"]["body"] for _ in texts
            ]
            assert received == texts
        finally:
            await alice.close()


async def test_a_customer_quoting_their_own_message_is_the_quoted_sender(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    async with subscribed_inbox(gw) as inbox:
        alice = await customer(relay, tmp_path / "alice")
        try:
            first = await alice.send_text(gw.gateway.phone, "Order #4711 has not arrived")
            quoted = (await inbox.next_message("text"))["messages"][0]
            await alice.send_text(
                gw.gateway.phone, "Any news about this?", reply_to=first.message_id
            )
            [message] = (await inbox.next_message("text"))["messages"]
            assert message["context"] == {"from": quoted["from"], "id": quoted["id"]}
        finally:
            await alice.close()
