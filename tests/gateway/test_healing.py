"""A business conversation heals itself on either side: when the gateway or the customer
loses or damages its session state, the message that could not be decrypted is asked for
again, reaches its reader (the business's webhook, or the customer), and the conversation
goes on; no status says delivered before the recipient could read the message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from gateway_support import RunningGateway, customer, next_of, subscribed_inbox
from support import RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent, MessageWaiting, StatusChanged
from tresen.client.store import MessageStatus
from tresen.gateway.ids import decode_wamid
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow


async def text_of(client: Client) -> tuple[str, str]:
    event = await next_of(client, MessageEvent, 30)
    assert isinstance(event.payload, Text)
    return event.message_id, event.payload.text


async def business_says(gw: RunningGateway, to: Client, text: str) -> str:
    r = await gw.send({"to": to.phone, "type": "text", "text": {"body": text}})
    assert r.status_code == 200, r.text
    return str(r.json()["messages"][0]["id"])


@pytest.mark.parametrize("how", ["deleted", "corrupted"])
async def test_the_gateway_losing_its_session_heals(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path, how: str
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    assert alice.account_id is not None
    assert alice.device_id is not None
    async with subscribed_inbox(gw) as inbox:
        await alice.send_text(gw.gateway.phone, "Hallo, eine Frage zu meiner Bestellung")
        await inbox.next_message("text")
        await business_says(gw, alice, "Gern, worum geht es?")
        await text_of(alice)

        # The gateway's session with Alice's device is lost, or its stored state damaged.
        device = gw.gateway.client
        device.sessions.forget(alice.account_id, alice.device_id)
        if how == "corrupted":
            device.store.put_session(
                alice.account_id, alice.device_id, "damaged", "bm90IGEgc2Vzc2lvbg", 1
            )

        lost = await alice.send_text(gw.gateway.phone, "Wo ist mein Paket 4711?")

        # The webhook gets the message itself (never an unreadable one), once it arrived.
        value = await inbox.next_message(within_s=30)
        [message] = value["messages"]
        assert message["type"] == "text"
        assert message["text"]["body"] == "Wo ist mein Paket 4711?"
        assert decode_wamid(message["id"]) == lost.message_id
        statuses = []
        while MessageStatus.DELIVERED not in statuses:
            event = await next_of(alice, StatusChanged, 30)
            if event.message_id == lost.message_id:
                statuses.append(event.status)
        assert statuses == [MessageStatus.WAITING, MessageStatus.DELIVERED]

        # Both ways go on.
        await business_says(gw, alice, "Es kommt morgen.")
        assert (await text_of(alice))[1] == "Es kommt morgen."
        await alice.send_text(gw.gateway.phone, "Danke")
        assert (await inbox.next_message("text"))["messages"][0]["text"]["body"] == "Danke"
    await alice.close()


async def test_the_customer_losing_its_session_heals(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    folder = tmp_path / "alice"
    alice = await customer(relay, folder)
    async with subscribed_inbox(gw) as inbox:
        await alice.send_text(gw.gateway.phone, "Hallo")
        await inbox.next_message("text")
        await business_says(gw, alice, "Willkommen!")
        await text_of(alice)

        await alice.close()
        with sqlite3.connect(folder / "client.db") as db:
            db.execute("DELETE FROM sessions")
        alice = Client.open(folder)
        alice.start()
        await alice.wait_drained()

        wamid = await business_says(gw, alice, "Ihr Paket kommt morgen zwischen 8 und 12 Uhr.")

        waiting = await next_of(alice, MessageWaiting, 30)
        assert waiting.message_id == decode_wamid(wamid)
        assert await text_of(alice) == (
            decode_wamid(wamid),
            "Ihr Paket kommt morgen zwischen 8 und 12 Uhr.",
        )
        # The business's statuses on it: sent, then delivered (not before Alice could read
        # it), never failed.
        sent = await inbox.next_status(wamid, within_s=30)
        assert sent["statuses"][0]["status"] == "sent"
        status = await inbox.next_status(wamid, within_s=30)
        assert status["statuses"][0]["status"] == "delivered"

        await alice.send_text(gw.gateway.phone, "Super, danke")
        assert (await inbox.next_message("text"))["messages"][0]["text"]["body"] == "Super, danke"
        await business_says(gw, alice, "Gern geschehen")
        assert (await text_of(alice))[1] == "Gern geschehen"
    await alice.close()
