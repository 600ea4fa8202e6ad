"""Webhook events leave the recorder in the order their messages and statuses came, even
when one commit records several of them (a backlog taken at once after a restart)."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import select
from webhook_support import APP_SECRET, VERIFY_TOKEN, WABA_ID

from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.gateway.recorder import Received, Recorder, Sent, StatusReport
from tresen.gateway.schema import webhook_events
from tresen.gateway.store import Contact, GatewayStore, StoredMessage
from tresen.gateway.webhooks import Outbox

ALICE = Contact("a" * 32, "+4915112345678", "4915112345678", "u1", "Alice", None)


def message(wamid: str, direction: str, created_ms: int) -> StoredMessage:
    return StoredMessage(
        wamid=wamid,
        relay_message_id=f"relay-{wamid}",
        contact=ALICE.account_id,
        direction=direction,
        type="text",
        content={"body": wamid},
        context_wamid=None,
        status="sent" if direction == "out" else "received",
        error_code=None,
        callback_data=None,
        created_ms=created_ms,
    )


def received(wamid: str, created_ms: int) -> Received:
    entry = {"from": ALICE.wa_id, "id": wamid, "type": "text", "text": {"body": wamid}}
    return Received(message(wamid, "in", created_ms), ALICE, entry)


async def queued(db: Database) -> list[tuple[str, str]]:
    """The queued events, oldest first: (kind, wamid or status)."""
    async with db.read() as conn:
        rows = (await conn.execute(select(webhook_events).order_by(webhook_events.c.id))).all()
    found = []
    for row in rows:
        value = json.loads(row.body)["entry"][0]["changes"][0]["value"]
        if "statuses" in value:
            status = value["statuses"][0]
            found.append((status["status"], status["id"]))
        else:
            found.append(("message", value["messages"][0]["id"]))
    return found


async def test_a_backlog_keeps_the_order_of_its_statuses_and_messages(
    db: Database, outbox: Outbox, clock: ManualClock, handshake_http: httpx.AsyncClient
) -> None:
    await outbox.subscribe(
        "https://shop.example/webhooks", VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http
    )
    recorder = Recorder(
        lambda: db,
        GatewayStore(db, clock),
        outbox,
        waba_id=WABA_ID,
        phone_number_id="100200300",
    )
    notice = message("wamid.notice", "out", 1)
    async with db.write() as conn:
        await recorder._apply(conn, [Sent(notice, ALICE)])

    # Alice read the notice, then wrote twice: all of it recorded in one commit.
    read = StatusReport("relay-wamid.notice", "wamid.notice", "read", 5, None)
    async with db.write() as conn:
        await recorder._apply(conn, [read, received("wamid.in1", 6), received("wamid.in2", 7)])

    # A status that comes before its message's own record waits for it.
    late = message("wamid.late", "out", 8)
    delivered = StatusReport("relay-wamid.late", "wamid.late", "delivered", 9, None)
    async with db.write() as conn:
        await recorder._apply(conn, [delivered, Sent(late, ALICE), received("wamid.in3", 10)])

    assert await queued(db) == [
        ("sent", "wamid.notice"),
        ("read", "wamid.notice"),
        ("message", "wamid.in1"),
        ("message", "wamid.in2"),
        ("sent", "wamid.late"),
        ("delivered", "wamid.late"),
        ("message", "wamid.in3"),
    ]
