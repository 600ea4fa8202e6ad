"""Sends wait for the network: a message sent while the relay cannot be reached is kept in
the outbox, survives a restart, and goes out in order, once, when the relay is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gateway_support import next_of
from support import RelayProcess, registered_client

from tresen.cli.chat.records import event_record
from tresen.client import Client
from tresen.client.events import MessageEvent, PendingSent
from tresen.client.store import MessageStatus
from tresen.wire.e2e import Text, decode_payload

pytestmark = pytest.mark.slow

ANA = "+4915110000101"
BEN = "+4915110000102"


async def pair(relay: RelayProcess, tmp_path: Path) -> tuple[Client, Client]:
    ana = await registered_client(relay.url, relay.sms_file, tmp_path / "ana", ANA)
    ben = await registered_client(relay.url, relay.sms_file, tmp_path / "ben", BEN)
    # A first message each way, so both know each other's number and devices.
    ben.start()
    await ana.send_text(BEN, "Hallo Ben")
    await next_of(ben, MessageEvent)
    return ana, ben


def texts_received(client: Client, chat: str) -> list[str]:
    """The texts ``client`` holds as received in ``chat``, in order."""
    found = []
    for message in client.store.messages(chat):
        if not message.outgoing and message.payload is not None:
            payload = decode_payload(message.payload)
            assert isinstance(payload, Text)
            found.append(payload.text)
    return found


async def test_three_messages_sent_offline_arrive_once_in_order_after_restarts(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    ana, ben = await pair(relay_process, tmp_path)
    assert ana.account_id is not None
    assert ben.account_id is not None
    relay_process.stop()

    words = ["Bin gleich da", "Noch 5 Minuten", "Stehe vor der Tür"]
    pending = [await ana.send_text(BEN, word) for word in words]

    assert [p.pending for p in pending] == [True, True, True]
    shown = [ana.store.message(p.message_id) for p in pending]
    assert [m.status if m else None for m in shown] == [MessageStatus.PENDING] * 3
    assert [q.local_id for q in ana.pending()] == [p.message_id for p in pending]
    # The app is closed and opened again while the relay is still away: nothing is lost.
    await ana.close()
    ana = Client.open(tmp_path / "ana")
    assert [q.local_id for q in ana.pending(ben.account_id)] == [p.message_id for p in pending]

    await relay_process.start()
    ana.start()
    went_out = [await next_of(ana, PendingSent, 30) for _ in words]
    assert [w.local_id for w in went_out] == [p.message_id for p in pending]
    # What ``tresen chat listen --json`` prints for it.
    record = await event_record(ana, went_out[0])
    assert record == {
        "event": "pending_sent",
        "local_id": pending[0].message_id,
        "message_id": went_out[0].message_id,
        "chat": ben.account_id,
        "server_ms": went_out[0].server_ms,
    }

    arrived = [await next_of(ben, MessageEvent, 60) for _ in words]
    assert [a.payload.text for a in arrived if isinstance(a.payload, Text)] == words
    assert [a.message_id for a in arrived] == [w.message_id for w in went_out]
    # Delivered once: each reaches ``delivered`` on Ana's side, and Ben holds each once.
    # Delivered once: each shows ✓✓ on Ana's side (after the relay was away, the apps
    # reconnect with a growing pause, so the reports may take a while on a busy machine).
    sent_ids = [w.message_id for w in went_out]
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        shown_now = [ana.store.message(m) for m in sent_ids]
        statuses = [m.status if m else None for m in shown_now]
        if (
            statuses == [MessageStatus.DELIVERED] * 3
            or asyncio.get_running_loop().time() > deadline
        ):
            break
        await asyncio.sleep(0.05)
    assert statuses == [MessageStatus.DELIVERED] * 3
    assert texts_received(ben, ana.account_id) == ["Hallo Ben", *words]
    assert ana.pending() == []
    assert all(ana.store.message(p.message_id) is None for p in pending)
    await ana.close()
    await ben.close()


async def test_a_pending_message_can_be_deleted_and_is_never_sent(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    ana, ben = await pair(relay_process, tmp_path)
    assert ana.account_id is not None
    relay_process.stop()
    regret = await ana.send_text(BEN, "Du bist doof")
    kept = await ana.send_text(BEN, "Bis morgen")

    assert await ana.delete_pending(regret.message_id)
    assert not await ana.delete_pending(regret.message_id)
    assert ana.store.message(regret.message_id) is None

    await relay_process.start()
    sent = await ana.flush_outbox()
    assert list(sent) == [kept.message_id]
    arrived = await next_of(ben, MessageEvent, 30)
    assert isinstance(arrived.payload, Text)
    assert arrived.payload.text == "Bis morgen"
    assert texts_received(ben, ana.account_id) == ["Hallo Ben", "Bis morgen"]
    await ana.close()
    await ben.close()


async def test_a_new_message_goes_out_behind_those_that_wait(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    """As ``tresen chat send`` does it, without a connection: the message waiting from an
    earlier run goes first, then the new one, and the new one's answer is the relay's."""
    await relay_process.start()
    ana, ben = await pair(relay_process, tmp_path)
    assert ana.account_id is not None
    relay_process.stop()
    first = await ana.send_text(BEN, "Erstens")
    await relay_process.start()

    second = await ana.send_text(BEN, "Zweitens")

    assert not second.pending
    assert ana.pending() == []
    stored = ana.store.message(second.message_id)
    assert stored is not None
    assert stored.status in (MessageStatus.SENT, MessageStatus.DELIVERED)
    arrived = [await next_of(ben, MessageEvent, 30) for _ in range(2)]
    assert [a.payload.text for a in arrived if isinstance(a.payload, Text)] == [
        "Erstens",
        "Zweitens",
    ]
    assert first.message_id not in {a.message_id for a in arrived}  # a local id only
    await ana.close()
    await ben.close()
