"""Delivered and read reports, and delivery receipts, that overtake the sender's own storing
of the message.

The relay's ``accepted`` answer and the recipient's ``delivered``/``read`` can reach the
sender's receive loop in one go: the loop resolves ``send()``'s wait with ``accepted`` and
reads on, before ``send()`` resumes and stores the message. The reports must not be lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import RunningRelay, registered_client

from tresen.client import Client
from tresen.client.events import DeliveryReceiptEvent, Event, StatusChanged
from tresen.client.store import MessageStatus
from tresen.crypto.delivery import DeliveryFacts, sign_delivery
from tresen.wire import relay as wire
from tresen.wire.e2e import DeliveryReceipt, Template

PRICING = wire.PricingFacts(
    billable=False, pricing_model="PMP", type="free_customer_service", category="service"
)


class OvertakingSocket:
    """Stands in for the relay's side of the connection: answers a send with ``accepted``
    and, in the same read, the recipient's ``delivered`` and ``read`` of that message,
    handled by the client's frame handler one after the other, as its receive loop does."""

    def __init__(self, client: Client, message_id: str) -> None:
        self.client = client
        self.message_id = message_id
        self.acked: list[int] = []

    async def send(self, raw: bytes) -> None:
        frame = wire.decode_client_frame(raw)
        if isinstance(frame, wire.Ack):
            self.acked.extend(frame.ids)
            return
        assert isinstance(frame, wire.Send)
        recipient = frame.to
        for reply in (
            wire.Accepted(
                client_msg_id=frame.client_msg_id, message_id=self.message_id, server_ms=1_000
            ),
            wire.Read(id=8, message_id=self.message_id, recipient=recipient, server_ms=1_300),
            wire.Delivered(
                id=7,
                message_id=self.message_id,
                recipient=recipient,
                server_ms=1_200,
                pricing=PRICING,
            ),
        ):
            await self.client.connection.on_frame(self, wire.encode(reply))  # type: ignore[arg-type]

    async def close(self) -> None:
        pass


@pytest.fixture
async def pair(relay: RunningRelay, tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    clients = [
        await registered_client(relay.url, relay.sms_file, tmp_path / name, relay.next_phone())
        for name in ("shop", "ana")
    ]
    yield clients[0], clients[1]
    for client in clients:
        await client.close()


def pending_events(client: Client) -> list[Event]:
    events: list[Any] = []
    while not client._events.empty():
        events.append(client._events.get_nowait())
    return events


async def test_reports_that_come_before_the_message_is_stored_are_applied(
    pair: tuple[Client, Client],
) -> None:
    sender, recipient = pair
    assert recipient.phone is not None
    message_id = "a96e06c32341d70992556bac22cec2e7"
    socket = OvertakingSocket(sender, message_id)
    sender.connection.ws = socket  # type: ignore[assignment]

    sent = await sender.send_text(recipient.phone, "Your parcel is on its way")

    assert sent.message_id == message_id
    stored = sender.store.message(message_id)
    assert stored is not None
    assert stored.status is MessageStatus.READ
    # Delivered first, then read, whatever order the reports came in; each with its time
    # and (delivered) the pricing facts.
    assert [e for e in pending_events(sender) if isinstance(e, StatusChanged)] == [
        StatusChanged(
            message_id,
            recipient.account_id or "",
            MessageStatus.DELIVERED,
            pricing=PRICING,
            server_ms=1_200,
        ),
        StatusChanged(message_id, recipient.account_id or "", MessageStatus.READ, server_ms=1_300),
    ]
    assert sorted(socket.acked) == [7, 8]


class ReceiptAfterAnswerSocket:
    """Stands in for the relay's side of the connection: the answer to a send and, in the
    same read, the recipient's signed delivery receipt of that message (a message of its own,
    handled by the receive loop before the send's task has resumed)."""

    def __init__(self, client: Client, customer: Client, message_id: str) -> None:
        self.client = client
        self.customer = customer
        self.message_id = message_id
        self.checked: asyncio.Future[DeliveryReceiptEvent | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._reading: set[asyncio.Task[None]] = set()

    async def send(self, raw: bytes) -> None:
        frame = wire.decode_client_frame(raw)
        if isinstance(frame, wire.Ack):
            return
        assert isinstance(frame, wire.Send)
        # The receive loop is a task of its own: it reads after the send has gone out.
        task = asyncio.create_task(self._read(frame))
        self._reading.add(task)

    async def _read(self, send: wire.Send) -> None:
        accepted = wire.Accepted(
            client_msg_id=send.client_msg_id, message_id=self.message_id, server_ms=1_000
        )
        await self.client.connection.on_frame(self, wire.encode(accepted))  # type: ignore[arg-type]
        customer, device_id = (
            self.customer.account_id or "",
            self.customer.device.require_device_id(),
        )
        facts = DeliveryFacts(
            message_id=self.message_id,
            business=self.client.account_id or "",
            customer=customer,
            device_id=device_id,
            template_id="4711",
            delivered_ms=1_100,
        )
        receipt = DeliveryReceipt(
            message_id=self.message_id,
            template_id="4711",
            delivered_ms=1_100,
            signature=sign_delivery(self.customer.device.require_identity(), facts),
        )
        frame = wire.MessageFrame(
            id=9,
            message_id="b" * 32,
            sender=customer,
            sender_device=device_id,
            klass=wire.MessageClass.RECEIPT,
            server_ms=1_150,
        )
        self.checked.set_result(await self.client.delivery.check(frame, receipt))

    async def close(self) -> None:
        pass


async def test_a_delivery_receipt_read_right_after_the_answer_to_its_message_is_kept(
    pair: tuple[Client, Client],
) -> None:
    shop, customer = pair
    assert customer.phone is not None
    message_id = "c1f0d7a2b3e4f5061728394a5b6c7d8e"
    socket = ReceiptAfterAnswerSocket(shop, customer, message_id)
    shop.connection.ws = socket  # type: ignore[assignment]
    template = Template(template_id="4711", name="shipped", language="en")

    sent = await shop.sender.send(
        customer.phone, template, klass=wire.MessageClass.TEMPLATE, template_ref="4711"
    )

    assert sent.message_id == message_id
    event = await socket.checked
    assert event is not None, dict(shop.delivery.dropped)
    assert (event.message_id, event.customer, event.template_id) == (
        message_id,
        customer.account_id,
        "4711",
    )
    assert not shop.delivery.dropped
